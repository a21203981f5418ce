import JMPTLS
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The exporter gateway: what a gateway listener's streams share (docs/WIRE.md, "The gateway").
///
/// Every call an exporter makes on the gateway goes to the real controller unchanged, except
/// that each `ListenResponse` names the gateway (``GatewaySettings/advertise``) as the router; a
/// `RouterService/Stream` call with a token handed out that way is relayed to the real router.
/// Upstream calls share pooled HTTP/2 connections, one per server: the gateway serves its
/// listener's connections on one event loop (``eventLoop``), where its upstream connections are
/// too, as a gRPC channel keeps one connection per server however many cores the host has.
public final class Gateway: Sendable {
    /// The settings.
    public let settings: GatewaySettings
    private let advertised: NIOLockedValueBox<String>
    let logger: Logger
    let statistics = GatewayStatistics()
    let tokens = RouterTokenBook()
    /// The TLS client contexts for the controller and the routers (``install(_:)`` replaces
    /// them on SIGHUP).
    private let trust: NIOLockedValueBox<Trust>
    private let connectionSettings: UpstreamConnectionSettings
    /// The most an exporter may have in flight when the gateway refuses its stream: what its
    /// ``RequestDrain`` discards at most before the status goes out anyway.
    let requestDrainBytes: Int
    /// The event loop the gateway listener's connections are served on, and its upstream
    /// connections with them: a relay's two streams are on one loop, and every relay and call
    /// to a server shares that server's one connection.
    public let eventLoop: any EventLoop
    /// The upstream connections, made on ``eventLoop`` when first used.
    private let upstreamPool: NIOLoopBoundBox<UpstreamPool?>
    private let upstreams: UpstreamStatusBook
    private let relays = NIOLockedValueBox<[Int: RelayRecord]>([:])
    private let listens = NIOLockedValueBox<[Int: ListenRecord]>([:])
    private let nextID = Atomic<Int>(1)
    /// The controller calls in flight, to end them when the bridge stops.
    private let controllerCalls = NIOLockedValueBox<[Int: NIOLoopBound<GatewayStreamHandler>]>([:])
    private let draining = Atomic<Bool>(false)

    /// Loads the CA files of `settings` (the TLS contexts for the controller and the routers).
    ///
    /// - Parameters:
    ///   - streamWindow: the HTTP/2 stream window of upstream connections (the bridge's
    ///     `stream-window`).
    ///   - maxPayloadSize: sizes the buffer a stream may queue towards a slow peer.
    ///   - eventLoop: the event loop to serve the listener's connections on (``eventLoop``).
    public init(
        settings: GatewaySettings,
        streamWindow: Int,
        maxPayloadSize: Int,
        eventLoop: any EventLoop,
        logger: Logger
    ) throws(GatewayError) {
        self.settings = settings
        self.eventLoop = eventLoop
        self.upstreamPool = NIOLoopBoundBox.makeEmptyBox(valueType: UpstreamPool.self, eventLoop: eventLoop)
        self.advertised = NIOLockedValueBox(settings.advertise)
        self.logger = logger
        self.upstreams = UpstreamStatusBook(controller: settings.controller, logger: logger)
        self.trust = NIOLockedValueBox(try Self.loadTrust(settings))
        self.requestDrainBytes = streamWindow + 2 * maxPayloadSize
        self.connectionSettings = UpstreamConnectionSettings(
            streamWindow: streamWindow,
            maxPayloadSize: maxPayloadSize,
            connectTimeout: settings.connectTimeout,
            keepalive: settings.keepalive,
            idleTimeout: settings.idleTimeout
        )
    }

    /// The TLS client contexts the gateway connects upstream with, its CA files loaded.
    public struct Trust: Sendable {
        let controller: UpstreamTrust.ClientContext
        let router: UpstreamTrust.ClientContext
    }

    private static func loadTrust(_ settings: GatewaySettings) throws(GatewayError) -> Trust {
        Trust(
            controller: try settings.controllerTrust.clientContext(),
            router: try settings.effectiveRouterTrust.clientContext()
        )
    }

    /// Reads the CA files again (for SIGHUP), without installing them: an error names the file.
    public func loadTrust() throws(GatewayError) -> Trust { try Self.loadTrust(self.settings) }

    /// Installs what ``loadTrust()`` read: connections made from now on check the servers'
    /// certificates against it (a connection that failed is tried again at once); open
    /// connections keep the check they passed.
    public func install(_ trust: Trust) {
        self.trust.withLockedValue { $0 = trust }
    }

    /// When the first certificate of each CA file the gateway checks servers against expires.
    public var authorities: [CertificateValidity] {
        let trust = self.trust.withLockedValue { $0 }
        var authorities = trust.controller.authorities.map { [$0] } ?? []
        if let router = trust.router.authorities, router.file != authorities.first?.file { authorities.append(router) }
        return authorities
    }

    /// The `router_endpoint` exporters are given (``GatewaySettings/advertise``, or the bound
    /// listener's address, set once it is bound).
    public var advertise: String {
        get { self.advertised.withLockedValue { $0 } }
        set { self.advertised.withLockedValue { $0 = newValue } }
    }

    /// The handler for one stream of a gateway listener; add it on the stream channel's loop.
    public func makeStreamHandler() -> some ChannelHandler {
        GatewayStreamHandler(gateway: self)
    }

    // MARK: - Upstream

    enum Upstream {
        case controller
        case router(UpstreamEndpoint)
    }

    /// Opens a stream to the controller or a router on its pooled connection; call it on
    /// ``eventLoop``. A router stream tries to connect whatever the backoff of an earlier
    /// failure (``UpstreamConnection``).
    func openStream(
        _ upstream: Upstream,
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        let pool = self.pool()
        switch upstream {
        case .controller:
            return pool.openStream(
                to: self.settings.controller,
                trust: self.settings.controllerTrust,
                tls: self.trust.withLockedValue { $0.controller },
                initializer
            )
        case .router(let endpoint):
            return pool.openStream(
                to: endpoint,
                trust: self.settings.effectiveRouterTrust,
                tls: self.trust.withLockedValue { $0.router },
                ignoringBackoff: true,
                initializer
            )
        }
    }

    /// Starts connecting to `router` unless the gateway has a connection to it (ready,
    /// connecting, or failed and waiting out its backoff): a `ListenResponse` naming it has just
    /// gone to an exporter, whose stream comes a moment later and finds the router's connection
    /// ready or under way instead of starting the TCP and TLS handshakes only then.
    func warm(_ router: UpstreamEndpoint) {
        let trust = self.settings.effectiveRouterTrust
        let tls = self.trust.withLockedValue { $0.router }
        self.eventLoop.execute {
            self.pool().warm(router, trust: trust, tls: tls)
        }
    }

    /// The upstream connections; call it on ``eventLoop``.
    private func pool() -> UpstreamPool {
        if let pool = self.upstreamPool.value { return pool }
        let upstreams = self.upstreams
        let pool = UpstreamPool(
            eventLoop: self.eventLoop,
            settings: self.connectionSettings,
            controller: self.settings.controller,
            logger: self.logger,
            report: { id, status in upstreams.report(id, status) }
        )
        self.upstreamPool.value = pool
        return pool
    }

    // MARK: - Certificates

    /// The certificate each upstream server presented at the gateway's latest handshake with
    /// it, sorted by server.
    public func upstreamCertificates() -> [UpstreamCertificate] { self.upstreams.certificates() }

    /// Logs each upstream certificate that expires within the warning period, or has expired
    /// (the daily check; a connection that sees one logs it at once); returns what it logged.
    @discardableResult
    public func checkUpstreamCertificates(now: Int64 = CertificateValidity.now()) -> [String] {
        self.upstreams.checkCertificates(now: now)
    }

    // MARK: - Draining

    /// The bridge is stopping: every controller call in flight ends with UNAVAILABLE (an
    /// exporter's Listen and Status calls would otherwise hold the stop for the whole grace
    /// time), and so does every new one; router relays carry on until they end.
    public func beginDrain() {
        // Under the calls' lock, so that a call registering meanwhile is either taken here or
        // refused by ``registerControllerCall(_:_:)``, never missed.
        let calls = self.controllerCalls.withLockedValue { calls in
            self.draining.store(true, ordering: .relaxed)
            defer { calls = [:] }
            return Array(calls.values)
        }
        for call in calls {
            call.eventLoop.execute { call.value.endForDrain() }
        }
    }

    /// Whether ``beginDrain()`` was called.
    var isDraining: Bool { self.draining.load(ordering: .relaxed) }

    /// Registers a controller call for ``beginDrain()`` to end; false once the gateway is
    /// draining: the call is to be refused.
    func registerControllerCall(_ id: Int, _ handler: NIOLoopBound<GatewayStreamHandler>) -> Bool {
        self.controllerCalls.withLockedValue { calls in
            guard !self.isDraining else { return false }
            calls[id] = handler
            return true
        }
    }

    func unregisterControllerCall(_ id: Int) {
        _ = self.controllerCalls.withLockedValue { $0.removeValue(forKey: id) }
    }

    // MARK: - Records

    func makeID() -> Int { self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue }

    func started(_ relay: RelayRecord) {
        self.statistics.relays.add(1, ordering: .relaxed)
        self.relays.withLockedValue { $0[relay.id] = relay }
    }

    func ended(_ relay: RelayRecord) {
        // Under the relays' lock, so that a metrics snapshot sees its bytes exactly once.
        self.relays.withLockedValue { relays in
            guard relays.removeValue(forKey: relay.id) != nil else { return }
            self.statistics.endedBytesToRouter.add(relay.bytesToRouter.load(ordering: .relaxed), ordering: .relaxed)
            self.statistics.endedBytesToExporter.add(
                relay.bytesToExporter.load(ordering: .relaxed),
                ordering: .relaxed
            )
        }
    }

    /// Runs `body` with the open relays, under the lock ``ended(_:)-(RelayRecord)`` takes.
    func withRelays(_ body: ([RelayRecord]) -> Void) {
        self.relays.withLockedValue { body(Array($0.values)) }
    }

    func started(_ listen: ListenRecord) { self.listens.withLockedValue { $0[listen.id] = listen } }

    func ended(_ listen: ListenRecord) { _ = self.listens.withLockedValue { $0.removeValue(forKey: listen.id) } }

    /// Records a token handed to an exporter.
    func handedOut(token: String, router: UpstreamEndpoint, listen: ListenRecord) {
        let expires = TokenExpiry.deadline(of: token, wallClock: Int64(time(nil)))
        self.tokens.record(
            token,
            RouterGrant(router: router, lease: listen.lease, exporter: listen.exporter, expires: expires)
        )
        listen.tokens.add(1, ordering: .relaxed)
        self.warm(router)
    }

    // MARK: - Status

    /// The gateway's `status` lines, as `key=value` items: one `gateway` line, one `upstream`
    /// line per server (its connections summed), one `listen` line per open
    /// Listen call and one `relay` line per running relay (see jmp-bridge(8)).
    public func statusItems(listener: String) -> [[(String, String)]] {
        let now = NIODeadline.now()
        let relays = self.relays.withLockedValue { $0.values.sorted { $0.id < $1.id } }
        let listens = self.listens.withLockedValue { $0.values.sorted { $0.id < $1.id } }
        var lines: [[(String, String)]] = [
            [
                ("gateway", listener),
                ("advertise", self.advertise),
                ("controller", "\(self.settings.controller)"),
                ("listens", "\(listens.count)"),
                ("relays", "\(relays.count)"),
                ("relays-total", "\(self.statistics.relays.load(ordering: .relaxed))"),
                ("controller-calls-total", "\(self.statistics.controllerCalls.load(ordering: .relaxed))"),
                ("refused-tokens", "\(self.statistics.refusedTokens.load(ordering: .relaxed))"),
                ("unavailable", "\(self.statistics.upstreamUnavailable.load(ordering: .relaxed))"),
                ("retried", "\(self.statistics.retriedCalls.load(ordering: .relaxed))"),
            ]
        ]
        let trust = self.trust.withLockedValue { $0 }
        if let controller = trust.controller.authorities {
            lines[0].append(("controller-ca-expires", controller.expires))
        }
        if let router = trust.router.authorities { lines[0].append(("router-ca-expires", router.expires)) }
        var byEndpoint: [UpstreamEndpoint: [UpstreamConnectionStatus]] = [:]
        for status in self.upstreams.all {
            byEndpoint[status.endpoint, default: []].append(status)
        }
        let order: [UpstreamConnectionStatus.State] = [.ready, .draining, .connecting, .failed, .idle]
        var certificates: [UpstreamEndpoint: UpstreamCertificate] = [:]
        for certificate in self.upstreams.certificates() { certificates[certificate.endpoint] = certificate }
        for (endpoint, connections) in byEndpoint.sorted(by: { $0.key.authority < $1.key.authority }) {
            let state = order.first { state in connections.contains { $0.state == state } } ?? .idle
            var items: [(String, String)] = [
                ("upstream", "\(endpoint)"),
                ("role", self.upstreams.role(of: endpoint)),
                ("state", state.rawValue),
                ("connections", "\(connections.filter { $0.state == .ready || $0.state == .draining }.count)"),
                ("streams", "\(connections.map(\.streams).reduce(0, +))"),
                ("connects", "\(connections.map(\.connects).reduce(0, +))"),
                ("failures", "\(connections.map(\.failures).reduce(0, +))"),
            ]
            if let certificate = certificates[endpoint] { items.append(("certificate-expires", certificate.expires)) }
            if state == .failed, let error = connections.compactMap(\.lastError).last {
                items.append(("error", error))
            }
            lines.append(items)
        }
        for listen in listens {
            lines.append([
                ("listen", listen.exporter),
                ("lease", listen.lease ?? "-"),
                ("age", Self.seconds(now - listen.started)),
                ("tokens", "\(listen.tokens.load(ordering: .relaxed))"),
            ])
        }
        for relay in relays {
            lines.append([
                ("relay", "\(relay.id)"),
                ("lease", relay.grant.lease ?? "-"),
                ("exporter", relay.grant.exporter ?? "-"),
                ("router", "\(relay.grant.router)"),
                ("age", Self.seconds(now - relay.started)),
                ("bytes-to-router", "\(relay.bytesToRouter.load(ordering: .relaxed))"),
                ("bytes-to-exporter", "\(relay.bytesToExporter.load(ordering: .relaxed))"),
            ])
        }
        return lines
    }

    /// `1.234s`.
    static func seconds(_ amount: TimeAmount) -> String {
        let milliseconds = max(0, amount.nanoseconds / 1_000_000)
        let fraction = "\(milliseconds % 1000)"
        return "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)s"
    }
}
