import JMPProtocol
import NIOCore
import Synchronization

/// The streams open on one HTTP/2 connection, for `max-streams-per-connection`.
final class ConnectionStreams: Sendable {
    /// Streams of this connection counted as open.
    let open = Atomic<Int>(0)
}
