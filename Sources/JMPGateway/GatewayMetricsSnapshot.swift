/// The gateway's numbers at one moment, for the metrics endpoint (the same facts as its
/// `status` lines).
public struct GatewayMetricsSnapshot: Sendable {
    /// Relays open now.
    public var relaysActive = 0
    /// Relays started since start.
    public var relaysTotal = 0
    /// Calls forwarded to the controller.
    public var controllerCalls = 0
    /// Router streams refused for their token.
    public var refusedTokens = 0
    /// Calls sent again because their upstream server refused them unprocessed.
    public var retriedCalls = 0
    /// DATA bytes relayed to routers, open relays included.
    public var bytesToRouter = 0
    /// DATA bytes relayed from routers, open relays included.
    public var bytesFromRouter = 0
    /// Each upstream server: its address, role (`controller` or `router`) and state.
    public var upstreams: [(upstream: String, role: String, state: String)] = []
    /// The certificate each upstream server presented at the latest handshake.
    public var certificates: [UpstreamCertificate] = []

    /// Every state an upstream can be in, for a gauge per state.
    public static let states = ["connecting", "ready", "draining", "idle", "failed"]
}

extension Gateway {
    /// The gateway's numbers now.
    public func metricsSnapshot() -> GatewayMetricsSnapshot {
        var snapshot = GatewayMetricsSnapshot()
        snapshot.relaysTotal = self.statistics.relays.load(ordering: .relaxed)
        snapshot.controllerCalls = self.statistics.controllerCalls.load(ordering: .relaxed)
        snapshot.refusedTokens = self.statistics.refusedTokens.load(ordering: .relaxed)
        snapshot.retriedCalls = self.statistics.retriedCalls.load(ordering: .relaxed)
        for line in self.statusItems(listener: "") {
            guard let first = line.first, first.0 == "upstream" else { continue }
            let value = { (key: String) in line.first { $0.0 == key }?.1 ?? "" }
            snapshot.upstreams.append((first.1, value("role"), value("state")))
        }
        snapshot.certificates = self.upstreamCertificates()
        self.withRelays { relays in
            snapshot.relaysActive = relays.count
            snapshot.bytesToRouter = self.statistics.endedBytesToRouter.load(ordering: .relaxed)
            snapshot.bytesFromRouter = self.statistics.endedBytesToExporter.load(ordering: .relaxed)
            for relay in relays {
                snapshot.bytesToRouter += relay.bytesToRouter.load(ordering: .relaxed)
                snapshot.bytesFromRouter += relay.bytesToExporter.load(ordering: .relaxed)
            }
        }
        return snapshot
    }
}
