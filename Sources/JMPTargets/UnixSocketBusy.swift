import NIOCore

/// A `unix:` target stayed busy (its listen backlog full, every `connect` answered with `EAGAIN`)
/// for the whole connect timeout.
public struct UnixSocketBusy: Error, CustomStringConvertible, Sendable {
    /// Connect attempts made.
    public var attempts: Int
    /// Time from the first attempt to giving up.
    public var waited: TimeAmount

    /// Creates the error.
    public init(attempts: Int, waited: TimeAmount) {
        self.attempts = attempts
        self.waited = waited
    }

    public var description: String {
        "the target's listen backlog stayed full for \(self.waited.nanoseconds / 1_000_000) ms "
            + "(\(self.attempts) connect attempts, connect-timeout)"
    }
}
