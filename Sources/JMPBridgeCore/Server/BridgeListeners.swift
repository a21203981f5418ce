import JMPGateway
import JMPMetrics
import JMPProtocol
import JMPSystemd
import JMPTargets
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// The sockets a bridge serves on: the gRPC listeners (bound here, or taken from the service
/// manager), each with its security and TLS context, and the control socket. A graceful shutdown
/// starts here: ``initiateShutdown(promise:)`` stops accepting and lets open connections finish.
final class BridgeListeners: Sendable {
    private let environment: BridgeContext
    private let group: any EventLoopGroup
    private let graceTime: TimeAmount
    private let idleExit: IdleExitTimer?
    private let passed: PassedDescriptors
    private let logger: Logger
    private let quiescing: ServerQuiescingHelper
    private let channels = NIOLockedValueBox<[any Channel]>([])
    private let controlChannel = NIOLockedValueBox<(any Channel)?>(nil)
    private let metricsChannels = NIOLockedValueBox<[any Channel]>([])

    /// Creates the listeners; nothing is bound until ``bind(_:verifier:)``.
    init(
        environment: BridgeContext,
        group: any EventLoopGroup,
        graceTime: TimeAmount,
        idleExit: IdleExitTimer?,
        passed: PassedDescriptors,
        logger: Logger
    ) {
        self.environment = environment
        self.group = group
        self.graceTime = graceTime
        self.idleExit = idleExit
        self.passed = passed
        self.logger = logger
        self.quiescing = ServerQuiescingHelper(group: group)
    }

    /// True once ``bind(_:verifier:)`` has succeeded.
    var isBound: Bool { self.channels.withLockedValue { !$0.isEmpty } }

    /// Binds every listener of `configuration`, then checks that the service manager passed no
    /// socket the configuration does not use (every other user of passed descriptors has claimed
    /// its own by now). On failure whatever was bound is closed again. Returns every bound
    /// socket with its real address (a `tcp:` port 0 resolved, a passed socket's own address).
    func bind(_ configuration: BridgeConfiguration, verifier: TokenVerifier?) async throws -> [BoundListener] {
        var channels: [any Channel] = []
        var bound: [BoundListener] = []
        do {
            for listener in configuration.listeners {
                let jwtConfigured = configuration.jwt != nil
                let auth = listener.effectiveAuth(jwtConfigured: jwtConfigured)
                for channel in try await self.bind(listener, verifier: verifier, jwtConfigured: jwtConfigured) {
                    channels.append(channel)
                    let address = Self.boundAddress(of: channel, configured: listener.address)
                    // Passed Unix sockets are served plain whatever the listener says (see adopt).
                    var tls = false
                    if case .tcp = address { tls = listener.tls != nil }
                    bound.append(BoundListener(address: address, configured: listener.address, tls: tls, auth: auth))
                }
            }
            if let gateway = configuration.gateway {
                channels += try await self.bindGateway(gateway, limits: configuration.limits)
            }
            try self.checkEveryPassedSocketIsUsed()
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        self.channels.withLockedValue { $0 = channels }
        return bound
    }

    /// Binds the exporter gateway's listener and publishes the running ``Gateway`` (advertising
    /// the bound address unless `advertise` is configured) in the context, for `status`.
    private func bindGateway(_ configuration: GatewayConfiguration, limits: Limits) async throws -> [any Channel] {
        let gateway: Gateway
        do {
            gateway = try Gateway(
                settings: configuration.settings(),
                streamWindow: limits.streamWindow,
                maxPayloadSize: limits.maxPayloadSize,
                eventLoop: self.group.next(),
                logger: self.logger
            )
        } catch {
            throw BridgeError("gateway: \(error)")
        }
        let channels = try await self.bind(
            configuration.listener,
            verifier: nil,
            jwtConfigured: false,
            gateway: gateway
        )
        guard let first = channels.first else { return channels }
        let address = Self.boundAddress(of: first, configured: configuration.listener.address)
        do {
            if configuration.advertise == nil { gateway.advertise = try GatewayConfiguration.advertise(for: address) }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        self.environment.gateway.withLockedValue {
            $0 = BoundGateway(gateway: gateway, address: address, configured: configuration.listener.address)
        }
        self.logger.info(
            "gateway listening",
            metadata: [
                "address": "\(address)", "advertise": "\(gateway.advertise)",
                "controller": "\(configuration.controller)", "controller-tls": "\(configuration.controllerTrust)",
            ]
        )
        return channels
    }

    /// Stops accepting on every listener; `promise` succeeds once every connection has closed.
    func initiateShutdown(promise: EventLoopPromise<Void>) {
        self.quiescing.initiateShutdown(promise: promise)
    }

    /// Re-reads the certificate, key and client CA of every TLS listener, all or nothing (see
    /// ``BridgeServer/reloadTLS()``). Returns how many listeners were reloaded.
    func reloadTLS() throws(BridgeError) -> Int {
        let boxes = self.environment.tlsContexts.withLockedValue { $0 }
        var loaded: [(TLSContextBox, ServerTLSContext)] = []
        for box in boxes {
            loaded.append((box, try box.load()))
        }
        for (box, context) in loaded {
            box.install(context)
        }
        return loaded.count
    }

    // MARK: - The control socket

    /// Binds the control socket `path` (`systemd:NAME`: the socket the service manager passed),
    /// if one is configured.
    func bindControlSocket(_ path: String?) async throws {
        guard let path else { return }
        let channel: any Channel
        if path.hasPrefix("systemd:") {
            let name = String(path.dropFirst(8))
            let passed = self.passed.claim(name: name)
            guard let socket = passed.first, passed.count == 1, socket.isListeningStreamSocket() else {
                throw BridgeError(
                    "control \(path): needs exactly one passed listening socket named '\(name)' (got \(passed.count))"
                )
            }
            do {
                channel = try await ControlServer.bootstrap(environment: self.environment, group: self.group)
                    .withBoundSocket(socket.descriptor).get()
            } catch {
                throw BridgeError("cannot serve the control socket \(path): \(Self.describe(error))")
            }
        } else {
            channel = try await ControlServer.bind(path: path, environment: self.environment, group: self.group)
        }
        self.controlChannel.withLockedValue { $0 = channel }
        self.logger.info("control socket bound", metadata: ["path": "\(path)"])
    }

    /// Closes the control socket (connections on it end when their consoles close).
    func closeControlSocket() async {
        let channel = self.controlChannel.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await channel?.close()
    }

    // MARK: - The metrics endpoint

    /// Binds the metrics endpoint at `address`, if one is configured, serving what `collector`
    /// renders; returns its bound address (a `tcp:` port 0 resolved).
    func bindMetrics(_ address: ListenAddress?, collector: MetricsCollector) async throws -> ListenAddress? {
        guard let address else { return nil }
        let logger = self.logger
        let limits = MetricsEndpoint.Limits.standard
        let bootstrap = MetricsEndpoint.bootstrap(
            group: self.group,
            limits: limits,
            refused: {
                collector.metrics.endpointRefused()
                logger.warning(
                    "metrics connection refused: too many connections",
                    metadata: ["max-connections": "\(limits.maxConnections)"]
                )
            }
        ) { eventLoop in
            collector.scrape(on: eventLoop)
        }
        var channels: [any Channel] = []
        do {
            switch address {
            case .tcp(let host, let port):
                channels = [
                    try await bootstrap.serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                        .bind(host: host, port: port).get()
                ]
            case .unix(let path):
                // Born with its final mode: the bridge's user and group may scrape.
                let socket = try UnixSocketFile.listen(path: path, mode: 0o660, group: nil, backlog: 64)
                do {
                    channels = [try await bootstrap.withBoundSocket(socket).get()]
                } catch {
                    close(socket)
                    unlink(path)
                    throw error
                }
            case .systemd(let name):
                let passed = self.passed.claim(name: name)
                guard !passed.isEmpty, passed.allSatisfy({ $0.isListeningStreamSocket() }) else {
                    throw BridgeError(
                        "metrics \(address): needs a passed listening stream socket named '\(name)' (got \(passed.count))"
                    )
                }
                for socket in passed {
                    channels.append(try await bootstrap.withBoundSocket(socket.descriptor).get())
                }
            }
        } catch let error as BridgeError {
            for channel in channels { try? await channel.close() }
            throw error
        } catch {
            for channel in channels { try? await channel.close() }
            throw BridgeError("cannot serve metrics on \(address): \(Self.describe(error))")
        }
        self.metricsChannels.withLockedValue { $0 = channels }
        guard let first = channels.first else { return address }
        let bound = Self.boundAddress(of: first, configured: address)
        self.logger.info("metrics endpoint bound", metadata: ["address": "\(bound)"])
        return bound
    }

    /// Closes the metrics endpoint.
    func closeMetrics() async {
        let channels = self.metricsChannels.withLockedValue { channels in
            defer { channels = [] }
            return channels
        }
        for channel in channels { try? await channel.close() }
    }

    // MARK: - Binding

    private func checkEveryPassedSocketIsUsed() throws {
        let unused = self.passed.unclaimed
        guard !unused.isEmpty else { return }
        let names = unused.map { "'\($0.name)' (fd \($0.descriptor))" }.joined(separator: ", ")
        throw BridgeError(
            "the service manager passed sockets the configuration does not use: \(names); "
                + "add a listener 'systemd:NAME' for each, or remove them from the socket unit"
        )
    }

    private func bind(
        _ listener: ListenerConfiguration,
        verifier: TokenVerifier?,
        jwtConfigured: Bool,
        gateway: Gateway? = nil
    ) async throws -> [any Channel] {
        let tls = try listener.tls.map { files throws(BridgeError) in
            try TLSContextBox(files: files, listener: "\(listener.address)")
        }
        let security = self.security(of: listener, verifier: verifier, jwtConfigured: jwtConfigured)
        let bootstrap = self.bootstrap(tls: tls, security: security, gateway: gateway)
        let channels = try await self.bindSockets(listener, jwtConfigured: jwtConfigured, bootstrap: bootstrap) {
            tls == nil ? bootstrap : self.bootstrap(tls: nil, security: security, gateway: gateway)
        }
        // Reloaded, shown and watched only where it is served: a `systemd:` listener's passed
        // Unix sockets are served plain.
        if let tls, channels.contains(where: { channel in Self.isTCP(channel) }) {
            self.environment.tlsContexts.withLockedValue { $0.append(tls) }
        }
        return channels
    }

    /// Binds (or adopts) the sockets of `listener` with `bootstrap`; passed Unix sockets get
    /// `plain()` instead.
    private func bindSockets(
        _ listener: ListenerConfiguration,
        jwtConfigured: Bool,
        bootstrap: ServerBootstrap,
        plain: () -> ServerBootstrap
    ) async throws -> [any Channel] {
        do {
            switch listener.address {
            case .tcp(let host, let port):
                return [
                    try await bootstrap
                        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                        .bind(host: host, port: port)
                        .get()
                ]
            case .unix(let path):
                // Never reachable more widely than configured (see UnixSocketFile).
                let socket = try UnixSocketFile.listen(path: path, mode: listener.mode, group: listener.group)
                do {
                    return [try await bootstrap.withBoundSocket(socket).get()]
                } catch {
                    close(socket)
                    unlink(path)
                    throw error
                }
            case .systemd(let name):
                // TLS is for the network: passed Unix sockets (protected by the unit's
                // SocketMode=/SocketGroup=) are served plain, TCP ones with the listener's TLS.
                return try await self.adopt(
                    listener,
                    name: name,
                    jwtConfigured: jwtConfigured,
                    tls: bootstrap,
                    plain: plain()
                )
            }
        } catch let error as BridgeError {
            throw error
        } catch {
            throw BridgeError("cannot listen on \(listener.address): \(Self.describe(error))")
        }
    }

    /// True for a TCP socket (IPv4 or IPv6), which a TLS listener serves with TLS.
    private static func isTCP(_ channel: any Channel) -> Bool {
        switch channel.localAddress {
        case .v4, .v6: return true
        default: return false
        }
    }

    /// What `listener` demands of its connections and streams. (A `tcp:` socket without
    /// authentication is logged as a warning once bound, with its real address: see
    /// BridgeServer.start().)
    private func security(
        of listener: ListenerConfiguration,
        verifier: TokenVerifier?,
        jwtConfigured: Bool
    ) -> ListenerSecurity {
        let auth = listener.effectiveAuth(jwtConfigured: jwtConfigured)
        return ListenerSecurity(
            listener: "\(listener.address)",
            verifier: auth == .jwt ? verifier : nil,
            peer: listener.peer,
            metrics: self.environment.metrics?.listener("\(listener.address)"),
            connections: ConnectionCap(limit: listener.maxConnections)
        )
    }

    /// A server bootstrap whose connections get the pipeline for `tls` and `security` (and the
    /// gateway's streams, for a gateway listener).
    private func bootstrap(tls: TLSContextBox?, security: ListenerSecurity, gateway: Gateway? = nil) -> ServerBootstrap
    {
        var configured = ConnectionPipeline(
            environment: self.environment,
            tls: tls,
            graceTime: self.graceTime,
            idleExit: self.idleExit,
            security: security
        )
        configured.gateway = gateway
        let pipeline = configured
        let quiescing = self.quiescing
        // A gateway's connections are served on its one event loop (see Gateway.eventLoop).
        return ServerBootstrap(group: self.group, childGroup: gateway?.eventLoop ?? self.group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.recvAllocator, value: HTTP2ReadBuffering.allocator)
            .childChannelOption(.maxMessagesPerRead, value: HTTP2ReadBuffering.messagesPerRead)
            .childChannelOption(.writeBufferWaterMark, value: HTTP2WriteBuffering.waterMark)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelInitializer { channel in pipeline.initialize(channel) }
    }

    /// Serves every socket the service manager passed as `name`: TCP ones with the `tls`
    /// bootstrap (which needs TLS or `insecure`), Unix ones with the `plain` one.
    private func adopt(
        _ listener: ListenerConfiguration,
        name: String,
        jwtConfigured: Bool,
        tls: ServerBootstrap,
        plain: ServerBootstrap
    ) async throws -> [any Channel] {
        let sockets = self.passed.claim(name: name)
        guard !sockets.isEmpty else {
            let available = self.passed.unclaimedNames
            throw BridgeError(
                "\(listener.address): the service manager passed no socket named '\(name)' ("
                    + (available.isEmpty
                        ? "none was passed: is the bridge started by its .socket unit?"
                        : "passed: \(available.joined(separator: ", "))") + ")"
            )
        }
        var channels: [any Channel] = []
        do {
            for socket in sockets {
                guard socket.isListeningStreamSocket() else {
                    throw BridgeError(
                        "\(listener.address): fd \(socket.descriptor) is not a listening stream socket "
                            + "(use ListenStream= and Accept=no in the socket unit)"
                    )
                }
                let family = socket.socketFamily
                let isTCP = family == AF_INET || family == AF_INET6
                if isTCP && listener.tls == nil && !listener.insecure {
                    throw BridgeError(
                        "\(listener.address) is a TCP socket: it needs 'tls: {cert, key}' or, for plain TCP, 'insecure: true'"
                    )
                }
                if isTCP, listener.effectiveAuth(jwtConfigured: jwtConfigured) == .none {
                    guard listener.allowUnauthenticated else {
                        throw BridgeError(
                            "\(listener.address) is a TCP socket and would accept streams without authentication: "
                                + "configure 'jwt:' or say 'allow-unauthenticated: true'"
                        )
                    }
                }
                let configured = isTCP ? tls.childChannelOption(.socketOption(.tcp_nodelay), value: 1) : plain
                channels.append(try await configured.withBoundSocket(socket.descriptor).get())
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        return channels
    }

    // MARK: - Helpers

    /// Reads the `jwt:` key file, if there is a `jwt:` section.
    static func loadVerifier(_ configuration: JWTConfiguration?) async throws(BridgeError) -> TokenVerifier? {
        guard let configuration else { return nil }
        return try await TokenVerifier.load(configuration)
    }

    /// The system's reason for an I/O error, else the error's own description.
    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }

    /// The address `channel` is bound to: a `tcp:` listener keeps its configured host with the
    /// real port, a `unix:` one its path; a passed socket is named by its own address (`tcp:IP:PORT`
    /// or `unix:PATH`).
    static func boundAddress(of channel: any Channel, configured: ListenAddress) -> ListenAddress {
        guard let local = channel.localAddress else { return configured }
        switch configured {
        case .tcp(let host, _):
            guard let port = local.port else { return configured }
            return .tcp(host: host, port: port)
        case .unix:
            return configured
        case .systemd:
            if let port = local.port, let ip = local.ipAddress { return .tcp(host: ip, port: port) }
            if let path = local.pathname, !path.isEmpty { return .unix(path: path) }
            return configured
        }
    }
}
