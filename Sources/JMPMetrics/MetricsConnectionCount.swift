import Synchronization

/// The metrics endpoint's open connections, counted across event loops.
final class MetricsConnectionCount: Sendable {
    private let served = Atomic<Int>(0)

    /// Counts a new connection in if fewer than `limit` are served; false: it is to be refused.
    func open(limit: Int) -> Bool {
        let (before, _) = self.served.add(1, ordering: .relaxed)
        guard before < limit else {
            self.served.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Counts a connection out when it has closed (`admitted`: what ``open(limit:)`` said).
    func close(admitted: Bool) {
        if admitted { self.served.subtract(1, ordering: .relaxed) }
    }
}
