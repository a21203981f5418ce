import JMPDoors
import JMPMetrics
import JMPTLS
import JMPTargets
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What the parts of one running bridge share: the routes in force, the limits and counters,
/// the open consoles and their attachment counts, the life-cycle state, the bound listeners with
/// their TLS contexts and the doors' counters. Stream handlers, the control socket and `status` read it.
public struct BridgeContext: Sendable {
    /// The routes in force; replaced as a whole on reload.
    public let routes: NIOLockedValueBox<RouteTable>
    /// Limits from the configuration.
    public let limits: Limits
    /// How long to wait for a client to end the RPC after the stream is otherwise done.
    public let linger: TimeAmount
    /// Shared counters.
    public let statistics: BridgeStatistics
    /// The Prometheus metrics; nil: no metrics endpoint (nothing is counted for one).
    public let metrics: BridgeMetrics?
    /// The metrics endpoint's address once bound, for `status`.
    public let metricsAddress = NIOLockedValueBox<ListenAddress?>(nil)
    /// The bridge's logger.
    public let logger: Logger
    /// The hubs of the open consoles (`pty:` and `serial:` routes) that streams and local
    /// attaches attach to, by route name; kept by the ``ConsoleRegistry``.
    public let consoles: NIOLockedValueBox<[String: ConsoleHub]>
    /// The pty links of the open `serial:` routes that have one, by route name, for `status`;
    /// kept by the ``ConsoleRegistry``.
    public let serialLinks = NIOLockedValueBox<[String: SerialLink]>([:])
    /// The bridge's life cycle state, for `status`.
    public let state: NIOLockedValueBox<BridgeState>
    /// The sockets the bridge serves gRPC on, once bound, for `status`.
    public let listeners: NIOLockedValueBox<[BoundListener]>
    /// The exporter gateway, once its listener is bound; nil: none configured.
    public let gateway = NIOLockedValueBox<BoundGateway?>(nil)
    /// The TLS context of every listener with TLS (the gateway's too), for reloads, `status`,
    /// the certificate metric and ``CertificateWatch``.
    let tlsContexts = NIOLockedValueBox<[TLSContextBox]>([])
    /// Attachments (streams and local attaches) to each console route now, for `max-attachments`.
    let consoleAttachments = NIOLockedValueBox<[String: Int]>([:])

    /// Each CA file in use once (the listeners' `client-ca` files, then the gateway's `ca`
    /// files), by the first of its certificates to expire: for the metric and the status line.
    var authorities: [CertificateValidity] {
        let listeners = self.tlsContexts.withLockedValue { $0 }.compactMap(\.clientAuthority)
        let gateway = self.gateway.withLockedValue { $0 }?.gateway.authorities ?? []
        var files: Set<String> = []
        return (listeners + gateway).filter { files.insert($0.file).inserted }
    }

    /// Takes one of a console route's `max-attachments` places; false when all are taken. A
    /// route without the limit always has room (and nothing to give back).
    func takeAttachmentPlace(_ route: RouteConfiguration) -> Bool {
        guard let maximum = route.target.maxAttachments else { return true }
        return self.consoleAttachments.withLockedValue { counts in
            let count = counts[route.name, default: 0]
            guard count < maximum else { return false }
            counts[route.name] = count + 1
            return true
        }
    }

    /// Gives back a place taken with ``takeAttachmentPlace(_:)``.
    func releaseAttachmentPlace(_ route: String) {
        self.consoleAttachments.withLockedValue { $0[route, default: 1] -= 1 }
    }

    /// Each route's local-door counters, for `status`.
    public let doorStatistics: @Sendable () -> [String: DoorStatistics]

    /// Creates an environment.
    public init(
        routes: RouteTable,
        limits: Limits,
        linger: TimeAmount,
        statistics: BridgeStatistics,
        logger: Logger,
        metrics: BridgeMetrics? = nil,
        doorStatistics: @escaping @Sendable () -> [String: DoorStatistics] = { [:] }
    ) {
        self.metrics = metrics
        self.doorStatistics = doorStatistics
        self.routes = NIOLockedValueBox(routes)
        self.limits = limits
        self.linger = linger
        self.statistics = statistics
        self.logger = logger
        self.consoles = NIOLockedValueBox([:])
        self.state = NIOLockedValueBox(.starting)
        self.listeners = NIOLockedValueBox([])
    }
}
