import JMPTargets
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// The gRPC side of the bridge: binds every configured listener and serves RouterService.Stream
/// on each, until a graceful shutdown closes the listeners and lets open streams finish.
public final class BridgeServer: Service, Sendable {
    /// The configuration served.
    public let configuration: BridgeConfiguration
    /// Counters across all streams.
    public let statistics = BridgeStatistics()
    let group: any EventLoopGroup
    let logger: Logger
    let environment: StreamEnvironment
    private let quiescing: ServerQuiescingHelper
    private let state = NIOLockedValueBoxHolder()
    private let ptys = NIOLockedValueBox<[(PseudoTerminal, String)]>([])
    /// The consoles of `serial:` routes and the control socket (BridgeServer+Serial.swift,
    /// BridgeServer+Control.swift).
    let serialConsoles = NIOLockedValueBox<[String: SerialConsole]>([:])
    let controlChannel = NIOLockedValueBox<(any Channel)?>(nil)

    /// How long open streams may take to finish after a graceful shutdown starts.
    public let graceTime: TimeAmount

    /// Creates a server; nothing is bound until ``start()`` or ``run()``.
    public init(
        configuration: BridgeConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        graceTime: TimeAmount = .seconds(30),
        logger: Logger
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.graceTime = graceTime
        self.quiescing = ServerQuiescingHelper(group: group)
        self.environment = StreamEnvironment(
            routes: RouteTable(routes: configuration.routes, defaultRoute: configuration.defaultRoute),
            limits: configuration.limits,
            linger: configuration.linger,
            statistics: self.statistics,
            logger: logger
        )
    }

    /// Binds every listener. If one fails, those already bound are closed again and the error
    /// says which listener and why. Returns the bound addresses (a `tcp:` port 0 resolved).
    @discardableResult
    public func start() async throws -> [ListenAddress] {
        var channels: [any Channel] = []
        var bound: [ListenAddress] = []
        // Consoles first: a stream may arrive the moment a listener is bound.
        try await self.openConsoles()
        do {
            try await self.openSerialConsoles()
            try await self.bindControlSocket()
            for listener in self.configuration.listeners {
                let channel = try await self.bind(listener)
                channels.append(channel)
                bound.append(Self.boundAddress(of: channel, configured: listener.address))
            }
        } catch {
            for channel in channels { try? await channel.close() }
            await self.closeConsoles()
            throw error
        }
        self.state.set(channels)
        for address in bound {
            self.logger.info("listening", metadata: ["address": "\(address)"])
        }
        return bound
    }

    /// Serves until a graceful shutdown (SIGTERM or SIGINT under a ServiceGroup), then stops
    /// accepting and waits up to ``graceTime`` for open streams.
    public func run() async throws {
        if self.state.get().isEmpty {
            try await self.start()
        }
        // Logged here, once the service group has installed its signal handlers, so that a
        // supervisor that signals as soon as it sees this line is heard.
        let routes = self.configuration.routes.values.sorted { $0.name < $1.name }.map { "\($0.name)=\($0.target)" }
        self.logger.info(
            "ready",
            metadata: [
                "routes": "\(routes.joined(separator: " "))",
                "default-route": "\(self.configuration.defaultRoute ?? "none")",
            ]
        )
        let promise = self.group.any().makePromise(of: Void.self)
        try await withGracefulShutdownHandler {
            try await promise.futureResult.get()
        } onGracefulShutdown: {
            self.logger.info("shutting down: no new connections; open streams may finish")
            self.quiescing.initiateShutdown(promise: promise)
        }
        await self.closeConsoles()
        self.logger.info("stopped")
    }

    /// Stops accepting and closes every connection after the grace time.
    public func shutdown() async throws {
        let promise = self.group.any().makePromise(of: Void.self)
        self.quiescing.initiateShutdown(promise: promise)
        try await promise.futureResult.get()
        await self.closeConsoles()
    }

    /// Allocates the pty of every `pty:` route, points its link at the slave and starts its hub.
    private func openConsoles() async throws {
        for route in self.configuration.routes.values.sorted(by: { $0.name < $1.name }) {
            guard case .pty(let options) = route.target else { continue }
            let pty: PseudoTerminal
            do {
                pty = try PseudoTerminal.open()
            } catch {
                await self.closeConsoles()
                throw BridgeStartupError("route '\(route.name)': \(error)")
            }
            // Tracked at once, so that every failure below releases it.
            self.ptys.withLockedValue { $0.append((pty, options.link)) }
            let hub: ConsoleHub
            do {
                try ConsoleLink.install(
                    link: options.link,
                    target: pty.slavePath,
                    mode: options.mode,
                    group: options.group
                )
                hub = try await ConsoleHub.start(
                    name: route.name,
                    master: pty.master,
                    on: self.group.next(),
                    scrollback: options.scrollback,
                    lagLimit: options.lagLimit,
                    logger: self.logger
                ).get()
            } catch {
                close(pty.master)  // NIO owns the master only once the hub has started
                await self.closeConsoles()
                throw BridgeStartupError("route '\(route.name)': \(error)")
            }
            self.environment.consoles.withLockedValue { $0[route.name] = hub }
            self.logger.info(
                "console ready",
                metadata: ["route": "\(route.name)", "link": "\(options.link)", "pty": "\(pty.slavePath)"]
            )
        }
    }

    /// Closes the control socket and every console hub, removes each pty's link and releases
    /// its slave.
    private func closeConsoles() async {
        await self.closeControlSocket()
        await self.closeSerialConsoles()
        let hubs = self.environment.consoles.withLockedValue { hubs in
            defer { hubs = [:] }
            return Array(hubs.values)
        }
        for hub in hubs { try? await hub.close().get() }
        let ptys = self.ptys.withLockedValue { ptys in
            defer { ptys = [] }
            return ptys
        }
        for (pty, link) in ptys {
            ConsoleLink.remove(link: link, target: pty.slavePath)
            close(pty.slaveKeeper)
        }
    }

    private func bind(_ listener: ListenerConfiguration) async throws -> any Channel {
        let tls = try listener.tls.map { files throws(BridgeStartupError) in
            try TLSContextFactory.makeContext(files, listener: "\(listener.address)")
        }
        let pipeline = ConnectionPipeline(environment: self.environment, tls: tls, graceTime: self.graceTime)
        let quiescing = self.quiescing
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try pipeline.configure(channel) }
            }
        do {
            switch listener.address {
            case .tcp(let host, let port):
                return
                    try await bootstrap
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .bind(host: host, port: port)
                    .get()
            case .unix(let path):
                let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
                    .get()
                if let mode = listener.mode, chmod(path, mode_t(mode)) != 0 {
                    let reason = String(cString: strerror(errno))
                    try? await channel.close()
                    throw BridgeStartupError("cannot set mode \(String(mode, radix: 8)) on \(path): \(reason)")
                }
                return channel
            }
        } catch let error as BridgeStartupError {
            throw error
        } catch {
            throw BridgeStartupError("cannot listen on \(listener.address): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }

    static func boundAddress(of channel: any Channel, configured: ListenAddress) -> ListenAddress {
        if case .tcp(let host, _) = configured, let port = channel.localAddress?.port {
            return .tcp(host: host, port: port)
        }
        return configured
    }
}

/// The bound server channels, set once after binding.
private final class NIOLockedValueBoxHolder: Sendable {
    private let box = NIOLockedValueBox<[any Channel]>([])
    func set(_ channels: [any Channel]) { self.box.withLockedValue { $0 = channels } }
    func get() -> [any Channel] { self.box.withLockedValue { $0 } }
}
