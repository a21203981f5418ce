import Synchronization

/// Connections served at once by one server socket (or the sockets of one listener), counted
/// across event loops against a limit: the metrics endpoint's and each gRPC listener's
/// `max-connections`.
public final class ConnectionCap: Sendable {
    /// Connections served at once.
    public let limit: Int
    private let served = Atomic<Int>(0)

    /// A cap of `limit` connections.
    public init(limit: Int) {
        self.limit = limit
    }

    /// Counts a new connection in if fewer than ``limit`` are served; false: it is to be refused
    /// (and is not counted).
    public func admit() -> Bool {
        let (before, _) = self.served.add(1, ordering: .relaxed)
        guard before < self.limit else {
            self.served.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Counts an admitted connection out once it has closed.
    public func release() {
        self.served.subtract(1, ordering: .relaxed)
    }
}
