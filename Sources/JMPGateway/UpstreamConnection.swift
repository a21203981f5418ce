import JMPProtocol
import JMPTLS
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// One pooled HTTP/2 connection to an upstream server, used on one event loop only: every call
/// from a downstream connection on that loop to that server becomes a stream on it.
///
/// It connects on first use. A failed attempt makes controller calls fail at once
/// (UNAVAILABLE, as a gRPC client in TRANSIENT_FAILURE does) until a backoff of 1 s, growing
/// ×1.6 per failure to 30 s, has passed; the next call then tries again. A router stream tries
/// at once whatever the backoff (`ignoringBackoff`): the stock exporter opens a new channel,
/// and so a new connection, for each one, and a router back from a restart must not go on
/// failing leases for up to 30 s. A connection the server sent GOAWAY on finishes
/// its calls while new calls get a new connection, and is closed once its last call has ended,
/// as gRPC clients do (the server may grant its calls a long grace time, and keep the connection
/// open that long). Its pool retires it (``retire()``) once it has carried no stream for a while.
final class UpstreamConnection {
    let endpoint: UpstreamEndpoint
    private let eventLoop: any EventLoop
    /// How the server's certificate is checked (`tls` is made from it), for messages.
    private let trust: UpstreamTrust
    /// The TLS context new connections are made with: the one the latest call brought (a
    /// reload of the CA files replaces it).
    private var tls: NIOSSLContext?
    /// When the first certificate of the CA file `trust` names expires, for messages.
    private var authorities: CertificateValidity?
    private let settings: UpstreamConnectionSettings
    private let logger: Logger
    private let report: (UpstreamConnectionStatus) -> Void

    /// One HTTP/2 connection to the server, with the streams open or being opened on it.
    private final class Link {
        let channel: any Channel
        let multiplexer: NIOHTTP2Handler.StreamMultiplexer
        /// Streams open on it, counted from the moment one is asked for: a GOAWAY that arrives
        /// while a stream is being set up must not close the connection under it.
        var streams = 0

        init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
            self.channel = channel
            self.multiplexer = multiplexer
        }
    }

    private enum State {
        case idle
        case connecting(EventLoopFuture<NIOLoopBound<Link>>)
        case ready(Link)
        case failed(retryAt: NIODeadline, reason: String)
    }

    private var state = State.idle
    private var status: UpstreamConnectionStatus
    /// When a stream last opened or closed on it (or it was created).
    private(set) var lastActive = NIODeadline.now()
    /// Retired by its pool: it reports nothing more.
    private var retired = false
    /// Connections the server sent GOAWAY on, closed once their last stream has closed.
    private var draining: [ObjectIdentifier: Link] = [:]

    init(
        endpoint: UpstreamEndpoint,
        eventLoop: any EventLoop,
        trust: UpstreamTrust,
        settings: UpstreamConnectionSettings,
        logger: Logger,
        report: @escaping (UpstreamConnectionStatus) -> Void
    ) {
        self.endpoint = endpoint
        self.eventLoop = eventLoop
        self.trust = trust
        self.settings = settings
        self.logger = logger
        self.report = report
        self.status = UpstreamConnectionStatus(
            endpoint: endpoint,
            state: .idle,
            streams: 0,
            connects: 0,
            failures: 0,
            lastError: nil,
            certificate: nil
        )
    }

    /// Takes `tls` for the connections made from now on.
    private func use(_ tls: UpstreamTrust.ClientContext) {
        guard tls.context !== self.tls else { return }
        // New CA files may cure what failed: no waiting out the backoff.
        if case .failed = self.state { self.state = .idle }
        self.tls = tls.context
        self.authorities = tls.authorities
    }

    /// Connects (with `tls`) if there is no connection, none being made, and no backoff to wait
    /// out, so that a stream expected soon finds it ready; counts as activity for the pool's
    /// idle timeout.
    func warm(tls: UpstreamTrust.ClientContext) {
        self.eventLoop.preconditionInEventLoop()
        self.lastActive = .now()
        self.use(tls)
        switch self.state {
        case .ready(let ready) where ready.channel.isActive:
            return
        case .connecting:
            return
        case .failed(let retryAt, _) where NIODeadline.now() < retryAt:
            return
        default:
            _ = self.connect()
        }
    }

    /// Opens a stream on the connection (connecting first if needed, with `tls`) with
    /// `initializer` run on the new stream channel. After a failed attempt it fails at once
    /// until the backoff has passed, unless `ignoringBackoff`: then it tries again now.
    func openStream(
        tls: UpstreamTrust.ClientContext,
        ignoringBackoff: Bool = false,
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        self.eventLoop.preconditionInEventLoop()
        self.lastActive = .now()
        self.use(tls)
        let link: EventLoopFuture<NIOLoopBound<Link>>
        switch self.state {
        case .ready(let ready) where ready.channel.isActive:
            link = self.eventLoop.makeSucceededFuture(NIOLoopBound(ready, eventLoop: self.eventLoop))
        case .connecting(let future):
            // (If it is GOAWAY'd as it becomes ready, the stream's HEADERS are refused and the
            // call is sent again: GatewayStreamHandler.)
            link = future
        case .failed(let retryAt, let reason) where !ignoringBackoff && NIODeadline.now() < retryAt:
            let tenths = (retryAt - NIODeadline.now()).nanoseconds / 100_000_000 + 1
            let text = "\(reason) (next attempt in \(tenths / 10).\(tenths % 10) s)"
            return self.eventLoop.makeFailedFuture(UpstreamUnavailable(endpoint: self.endpoint, reason: text))
        default:
            link = self.connect()
        }
        let endpoint = self.endpoint
        let trust = self.trust
        let authorities = self.authorities
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        return link.flatMap { boundLink in
            let connection = loopBound.value
            let link = boundLink.value
            link.streams += 1
            connection.status.streams += 1
            connection.publish()
            let promise = connection.eventLoop.makePromise(of: (any Channel).self)
            link.multiplexer.createStreamChannel(promise: promise, initializer)
            promise.futureResult.whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.closeFuture.whenComplete { _ in loopBound.value.streamEnded(on: boundLink.value) }
                case .failure:
                    loopBound.value.streamEnded(on: boundLink.value)
                }
            }
            return promise.futureResult
        }.flatMapErrorThrowing { error in
            if error is UpstreamUnavailable { throw error }
            throw UpstreamUnavailable(
                endpoint: endpoint,
                reason: Self.describe(error, endpoint: endpoint, trust: trust, authorities: authorities)
            )
        }
    }

    /// A stream of `link` closed, or could not be opened.
    private func streamEnded(on link: Link) {
        link.streams -= 1
        self.status.streams -= 1
        self.lastActive = .now()
        self.publish()
        self.closeIfDrained(link)
    }

    private func connect() -> EventLoopFuture<NIOLoopBound<Link>> {
        let ready = self.eventLoop.makePromise(of: Void.self)
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        let endpoint = self.endpoint
        let tls = self.tls
        let settings = self.settings
        let logger = self.logger
        let readyBox = NIOLoopBound(ready, eventLoop: self.eventLoop)
        let connected = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: HTTP2ReadBuffering.allocator)
            .channelOption(.maxMessagesPerRead, value: HTTP2ReadBuffering.messagesPerRead)
            .channelOption(.writeBufferWaterMark, value: HTTP2WriteBuffering.waterMark)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        // An IP address is checked against the certificate's IP SANs; SNI needs a name.
                        let isAddress = (try? SocketAddress(ipAddress: endpoint.host, port: 0)) != nil
                        try sync.addHandler(
                            NIOSSLClientHandler(context: tls, serverHostname: isAddress ? nil : endpoint.host)
                        )
                    }
                    try sync.addHandler(
                        NIOHTTP2Handler(
                            mode: .client,
                            eventLoop: channel.eventLoop,
                            connectionConfiguration: settings.connection,
                            streamConfiguration: settings.stream
                        ) { pushed in pushed.close() }
                    )
                    try sync.addHandler(
                        UpstreamConnectionHandler(
                            endpoint: endpoint,
                            usesTLS: tls != nil,
                            keepalive: settings.keepalive,
                            handshakeTimeout: settings.connectTimeout,
                            logger: logger,
                            onReady: { error in
                                if let error { readyBox.value.fail(error) } else { readyBox.value.succeed(()) }
                            },
                            onGoAway: { loopBound.value.goAwayReceived(on: channel) },
                            onInactive: { loopBound.value.closed(channel, error: $0) }
                        )
                    )
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
        connected.whenFailure { readyBox.value.fail($0) }
        let multiplexer = connected.flatMap { channel in
            ready.futureResult.flatMapThrowing {
                (channel, try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self).syncMultiplexer())
            }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw error
            }
        }
        let result = multiplexer.map { channel, multiplexer in
            let connection = loopBound.value
            let link = Link(channel: channel, multiplexer: multiplexer)
            connection.state = .ready(link)
            connection.status.state = .ready
            connection.status.connects += 1
            connection.failures = 0
            let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamConnectionHandler.self)
            var metadata: Logger.Metadata = ["upstream": "\(endpoint)"]
            if let notValidAfter = handler?.serverCertificateNotValidAfter {
                connection.status.certificate = .init(notValidAfter: notValidAfter, seen: .now())
                metadata["certificate-expires"] = "\(CertificateValidity.iso8601(notValidAfter))"
            }
            logger.info("gateway: upstream connected", metadata: metadata)
            connection.publish()
            // A guard: a GOAWAY read before the connection was marked ready drains it from the
            // start and new calls get a new one. Ready is marked inside the TLS handshake-completed
            // event (h2c: at connect), and the calls waiting for it open their streams in this same
            // callback chain, before any frame after the handshake is read, so a GOAWAY in that
            // flight normally arrives after their streams exist; NIOHTTP2 refuses their HEADERS
            // and they are sent again (GatewayStreamHandler).
            if handler?.sawGoAway == true {
                connection.goAwayReceived(on: channel)
            }
            return NIOLoopBound(link, eventLoop: channel.eventLoop)
        }
        result.whenFailure { error in loopBound.value.connectFailed(error) }
        self.state = .connecting(result)
        self.status.state = .connecting
        self.publish()
        return result
    }

    /// Consecutive failed attempts, for the backoff.
    private var failures = 0

    private func connectFailed(_ error: any Error) {
        self.failures += 1
        var backoff = 1.0
        for _ in 1..<self.failures { backoff = min(backoff * 1.6, 30) }
        let reason = Self.describe(error, endpoint: self.endpoint, trust: self.trust, authorities: self.authorities)
        self.state = .failed(retryAt: .now() + .milliseconds(Int64(backoff * 1000)), reason: reason)
        self.status.state = .failed
        self.status.failures += 1
        self.status.lastError = reason
        self.publish()
        self.logger.warning(
            "gateway: cannot connect upstream",
            metadata: ["upstream": "\(self.endpoint)", "error": "\(reason)", "retry-after": "\(backoff)s"]
        )
    }

    private func goAwayReceived(on channel: any Channel) {
        // Only the current connection can be news: one draining already is, and a GOAWAY
        // before the connection is ready ends its set-up instead.
        guard case .ready(let link) = self.state, link.channel === channel else { return }
        self.state = .idle
        self.status.state = .draining
        self.publish()
        self.logger.info(
            "gateway: upstream sent GOAWAY; new calls use a new connection",
            metadata: ["upstream": "\(self.endpoint)"]
        )
        guard channel.isActive else { return }
        self.draining[ObjectIdentifier(link)] = link
        self.closeIfDrained(link)
    }

    /// Closes `link` if it is draining and no stream is open on it any more.
    private func closeIfDrained(_ link: Link) {
        let id = ObjectIdentifier(link)
        guard self.draining[id] != nil, link.streams <= 0 else { return }
        self.draining[id] = nil
        self.logger.info(
            "gateway: upstream connection drained after GOAWAY; closing it",
            metadata: ["upstream": "\(self.endpoint)"]
        )
        link.channel.close(promise: nil)
    }

    /// `channel` closed (`error`: the connection error that ended it). Calls still on it are
    /// lost, each logged at its own end ("lost the call").
    private func closed(_ channel: any Channel, error: (any Error)?) {
        self.draining = self.draining.filter { $0.value.channel !== channel }
        if case .ready(let current) = self.state, current.channel === channel {
            self.state = .idle
        }
        if case .idle = self.state {
            self.status.state = .idle
            self.publish()
        }
        var metadata: Logger.Metadata = ["upstream": "\(self.endpoint)"]
        if let error { metadata["error"] = "\(UpstreamConnectionLost(error))" }
        self.logger.info("gateway: upstream connection closed", metadata: metadata)
    }

    /// Whether it carries no stream and is not being set up: it may be retired.
    var isUnused: Bool {
        if case .connecting = self.state { return false }
        return self.status.streams == 0
    }

    /// Closes the connection (if it is open) and stops reporting: its pool has forgotten it.
    func retire() {
        self.retired = true
        if case .ready(let link) = self.state {
            self.state = .idle
            link.channel.close(promise: nil)
        }
        for link in self.draining.values { link.channel.close(promise: nil) }
        self.draining = [:]
    }

    private func publish() {
        guard !self.retired else { return }
        self.report(self.status)
    }

    /// The system's reason for an I/O error, what a failed TLS handshake means
    /// (``TLSHandshakeFailure``, or the dates of a certificate refused for them: the server's, or
    /// those of the CA file `trust` names, `authorities`), else the error's description.
    static func describe(
        _ error: any Error,
        endpoint: UpstreamEndpoint,
        trust: UpstreamTrust,
        authorities: CertificateValidity? = nil,
        now: Int64 = CertificateValidity.now()
    ) -> String {
        if let refused = error as? RefusedServerCertificate {
            if let reason = refused.reason(now: now) { return reason }
            let described = Self.describe(refused.error, endpoint: endpoint, trust: trust)
            guard let authorities, authorities.standing(now: now) == .expired else { return described }
            return "\(described), one of which expired at \(authorities.expires); put the renewed CA in the "
                + "file, then reload (SIGHUP)"
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? NIOConnectionError {
            return error.connectionErrors.last.map { Self.describe($0.error, endpoint: endpoint, trust: trust) }
                ?? "\(error)"
        }
        if let failure = TLSHandshakeFailure(error) { return failure.asClient(endpoint, trust: trust) }
        if error is ChannelError, case .connectTimeout = error as? ChannelError { return "connect timeout" }
        return "\(error)"
    }
}
