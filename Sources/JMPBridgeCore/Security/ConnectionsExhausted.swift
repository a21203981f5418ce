/// The listener serves its `max-connections` already: the new connection is closed.
struct ConnectionsExhausted: Error, CustomStringConvertible {
    var limit: Int
    var description: String { "the listener serves its max-connections (\(self.limit)) already" }
}
