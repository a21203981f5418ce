import CJMPSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One door connection and its target connection, relayed both ways; each direction ends on
/// its own (half-close), and the relay when both have.
final class SpliceRelay {
    let id: UInt64
    let route: String
    let client: CInt
    let target: CInt
    let toTarget: RelayDirection
    let fromTarget: RelayDirection
    let started: ContinuousClock.Instant

    init(id: UInt64, route: String, client: CInt, target: CInt, splice: Bool, capacity: Int) {
        self.id = id
        self.route = route
        self.client = client
        self.target = target
        self.toTarget = RelayDirection(from: client, to: target, splice: splice, capacity: capacity)
        self.fromTarget = RelayDirection(from: target, to: client, splice: splice, capacity: capacity)
        self.started = .now
    }

    /// Both directions have ended, or the client has gone altogether (closed, not half-closed)
    /// after all it sent reached the target: what the target still sends has nobody to reach,
    /// and a target that sends nothing more and never closes would hold the relay for ever.
    var isFinished: Bool {
        guard !self.fromTarget.isFinished else { return self.toTarget.isFinished }
        return self.toTarget.isFinished && jmp_peer_closed(self.client) == 1
    }

    /// Moves what can be moved now, in both directions.
    func pump() throws(RelayDirection.Failure) {
        try self.toTarget.pump()
        try self.fromTarget.pump()
    }

    /// Closes both connections (the pipes go with the directions).
    func close() {
        Glibc.close(self.client)
        Glibc.close(self.target)
    }
}
