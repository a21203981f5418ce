import CJMPSystem
import JMPDoors
import JMPSystemd
import JMPTargets
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The gRPC side of the bridge: binds every configured listener and serves RouterService.Stream
/// on each, until a graceful shutdown closes the listeners and lets open streams finish.
///
/// Under systemd it also takes its sockets and consoles from the service manager (socket
/// activation and the file-descriptor store), reports readiness, status and liveness, and
/// applies a new configuration on ``reload(to:)``.
public final class BridgeServer: Service, Sendable {
    /// The configuration served (the routes of the last successful reload).
    public var configuration: BridgeConfiguration { self.current.withLockedValue { $0 } }
    /// Counters across all streams.
    public let statistics = BridgeStatistics()
    /// The consoles of `serial:` routes (BridgeServer+Serial.swift) and the control socket
    /// (BridgeServer+Control.swift).
    let serialConsoles = NIOLockedValueBox<[String: SerialConsole]>([:])
    let controlChannel = NIOLockedValueBox<(any Channel)?>(nil)
    /// How long open streams may take to finish after a graceful shutdown starts.
    public let graceTime: TimeAmount

    private let current: NIOLockedValueBox<BridgeConfiguration>
    let group: any EventLoopGroup
    let logger: Logger
    let environment: StreamEnvironment
    private let quiescing: ServerQuiescingHelper
    private let channels = NIOLockedValueBox<[any Channel]>([])
    private let consoles = NIOLockedValueBox<[String: OpenConsole]>([:])
    private let passed: PassedDescriptors
    let notifier: ServiceNotifier
    private let idleExit: IdleExitTimer?
    private let shutdownStarted = Atomic<Bool>(false)
    /// The local doors' event loop, started with the first door.
    private let doorLoop = NIOLockedValueBox<DoorLoop?>(nil)
    /// The TLS context of every listener with TLS, for ``reloadTLS()``.
    let tlsContexts = NIOLockedValueBox<[TLSContextBox]>([])

    /// A `pty:` route's console while it is open.
    private struct OpenConsole: Sendable {
        let pty: PseudoTerminal
        let options: PtyConfiguration
        /// The master is in the service manager's file-descriptor store, so the pty outlives
        /// this process and its link must stay in place on exit.
        let stored: Bool
    }

    /// Creates a server; nothing is bound until ``start()`` or ``run()``.
    ///
    /// - Parameters:
    ///   - passedDescriptors: sockets and stored consoles from the service manager.
    ///   - notifier: how to reach the service manager (default: `NOTIFY_SOCKET`, if set).
    public init(
        configuration: BridgeConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        graceTime: TimeAmount = .seconds(30),
        passedDescriptors: PassedDescriptors = PassedDescriptors(),
        notifier: ServiceNotifier? = nil,
        logger: Logger
    ) {
        self.current = NIOLockedValueBox(configuration)
        self.group = group
        self.logger = logger
        self.graceTime = graceTime
        self.passed = passedDescriptors
        self.notifier = notifier ?? ServiceNotifier(logger: logger)
        self.quiescing = ServerQuiescingHelper(group: group)
        self.idleExit = configuration.exitIdleTime.map { IdleExitTimer(idleTime: $0, eventLoop: group.next()) }
        self.environment = StreamEnvironment(
            routes: RouteTable(routes: configuration.routes, defaultRoute: configuration.defaultRoute),
            limits: configuration.limits,
            linger: configuration.linger,
            statistics: self.statistics,
            logger: logger
        )
    }

    /// Opens every console and binds every listener. If one fails, what was already opened is
    /// closed again and the error says which listener or route and why. Sockets passed by the
    /// service manager that the configuration does not use are an error too. Returns the bound
    /// addresses (a `tcp:` port 0 resolved).
    @discardableResult
    public func start() async throws -> [ListenAddress] {
        var channels: [any Channel] = []
        var bound: [BoundListener] = []
        let configuration = self.configuration
        // Security before anything else: a bad key file opens nothing, and a listener that
        // asks for JWT never runs without a verifier.
        try configuration.validateSecurity()
        let verifier = try await Self.loadVerifier(configuration.jwt)
        // Consoles first: a stream may arrive the moment a listener is bound.
        do {
            for route in configuration.routes.values.sorted(by: { $0.name < $1.name }) {
                try await self.openConsole(route)
            }
            self.releaseStaleConsoles()
            for route in configuration.routes.values.sorted(by: { $0.name < $1.name }) {
                try self.openDoor(route)
            }
            try await self.bindControlSocket()
            for listener in configuration.listeners {
                let auth = listener.effectiveAuth(jwtConfigured: configuration.jwt != nil)
                for channel in try await self.bind(listener, verifier: verifier) {
                    channels.append(channel)
                    let address = Self.boundAddress(of: channel, configured: listener.address)
                    // Passed Unix sockets are served plain whatever the listener says (see adopt).
                    var tls = false
                    if case .tcp = address { tls = listener.tls != nil }
                    bound.append(BoundListener(address: address, configured: listener.address, tls: tls, auth: auth))
                }
            }
            try self.checkEveryPassedSocketIsUsed()
        } catch {
            for channel in channels { try? await channel.close() }
            await self.closeConsoles()
            await self.stopDoors()
            throw error
        }
        self.channels.withLockedValue { $0 = channels }
        self.environment.listeners.withLockedValue { $0 = bound }
        for listener in bound {
            self.logger.info(
                "listening",
                metadata: ["address": "\(listener.address)", "configured": "\(listener.configured)"]
            )
            if case .tcp = listener.address, listener.auth == .none {
                self.logger.warning(
                    "UNAUTHENTICATED LISTENER: anyone who can reach it may use every route (allow-unauthenticated)",
                    metadata: ["address": "\(listener.address)"]
                )
            }
        }
        return bound.map(\.address)
    }

    /// Serves until a graceful shutdown (SIGTERM or SIGINT under a ServiceGroup) or, with
    /// `exit-idle-time`, until no client has been connected for that long; then stops accepting
    /// and waits up to ``graceTime`` for open streams.
    public func run() async throws {
        if self.channels.withLockedValue({ $0.isEmpty }) {
            try await self.start()
        }
        // Logged and notified here, once the service group has installed its signal handlers,
        // so that a supervisor that signals as soon as it sees readiness is heard.
        let configuration = self.configuration
        let routes = configuration.routes.values.sorted { $0.name < $1.name }.map { "\($0.name)=\($0.target)" }
        self.logger.info(
            "ready",
            metadata: [
                "routes": "\(routes.joined(separator: " "))",
                "default-route": "\(configuration.defaultRoute ?? "none")",
            ]
        )
        let readyStatus = self.statusLine()
        self.environment.state.withLockedValue { $0 = .ready }
        self.notifier.ready(status: readyStatus)
        let promise = self.group.any().makePromise(of: Void.self)
        if let idleExit = self.idleExit, let idleTime = configuration.exitIdleTime {
            idleExit.start {
                self.logger.info("exiting: no client connected", metadata: ["exit-idle-time": "\(idleTime)"])
                self.notifier.stopping(status: "exiting: idle")
                self.beginShutdown(promise)
            }
        }
        let reporter = ServiceManagerReporter(
            notifier: self.notifier,
            group: self.group,
            statusInterval: .seconds(2),
            initialStatus: readyStatus,
            status: { [self] in self.statusLine() }
        )
        let trimmer = HeapTrimmer(interval: .seconds(10), logger: self.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await reporter.run() }
            tasks.addTask { await trimmer.run() }
            try await withGracefulShutdownHandler {
                try await promise.futureResult.get()
            } onGracefulShutdown: {
                let open = self.statistics.activeStreams.load(ordering: .relaxed)
                self.notifier.stopping(status: "stopping: draining \(Self.count(open, "open stream"))")
                self.logger.info(
                    "shutting down: no new connections; open streams may finish",
                    metadata: ["open-streams": "\(open)", "grace": "\(self.graceTime)"]
                )
                self.beginShutdown(promise)
            }
            tasks.cancelAll()
        }
        await self.closeConsoles()
        await self.stopDoors()
        self.logger.info("stopped")
    }

    /// Stops accepting and closes every connection after the grace time.
    public func shutdown() async throws {
        let promise = self.group.any().makePromise(of: Void.self)
        self.beginShutdown(promise)
        try await promise.futureResult.get()
        await self.closeConsoles()
        await self.stopDoors()
    }

    /// Starts the drain once, whichever of a signal, idleness or ``shutdown()`` asks first.
    private func beginShutdown(_ promise: EventLoopPromise<Void>) {
        guard !self.shutdownStarted.exchange(true, ordering: .relaxed) else {
            // A second request (a signal during an idle exit): wait for the first drain.
            return
        }
        self.environment.state.withLockedValue { $0 = .stopping }
        self.idleExit?.stop()
        if let doors = self.doorLoop.withLockedValue({ $0 }) {
            for route in self.configuration.routes.keys { doors.remove(route: route) }
        }
        self.quiescing.initiateShutdown(promise: promise)
    }

    /// A one-line summary for `systemctl status` and the log.
    public func statusLine() -> String {
        let configuration = self.configuration
        let statistics = self.statistics
        let streams = statistics.activeStreams.load(ordering: .relaxed)
        let connections = statistics.activeConnections.load(ordering: .relaxed)
        let total = statistics.totalStreams.load(ordering: .relaxed)
        let failed = statistics.failedStreams.load(ordering: .relaxed)
        let routes = configuration.routes.keys.sorted().joined(separator: ", ")
        return "\(Self.count(streams, "stream")) open on \(Self.count(connections, "connection")) "
            + "(\(total) since start, \(failed) failed); routes: \(routes.isEmpty ? "none" : routes)"
    }

    /// "1 stream", "2 streams".
    static func count(_ number: Int, _ noun: String) -> String { "\(number) \(noun)\(number == 1 ? "" : "s")" }

    // MARK: - Reloading

    /// Applies a new configuration without a restart: routes added, removed or changed take
    /// effect at once; streams already open keep running (a stream on a `pty:` route that was
    /// removed or changed is ended with UNAVAILABLE, as its console goes away). Listener, limit,
    /// linger and exit-idle-time changes need a restart and are reported as such.
    ///
    /// Returns what changed, for the log and the status line. A new route whose console cannot
    /// be opened makes the whole reload fail before anything is changed; a changed route whose
    /// new console cannot be opened is down afterwards, listed in ``ReloadSummary/failures``.
    @discardableResult
    public func reload(to new: BridgeConfiguration) async throws -> ReloadSummary {
        let old = self.configuration
        var summary = ReloadSummary()
        if old.listeners != new.listeners { summary.needRestart.append("listen") }
        if old.limits != new.limits { summary.needRestart.append("limits") }
        if old.linger != new.linger { summary.needRestart.append("linger") }
        if old.exitIdleTime != new.exitIdleTime { summary.needRestart.append("exit-idle-time") }
        for name in new.routes.keys.sorted() where old.routes[name] == nil {
            summary.added.append(name)
        }
        for name in old.routes.keys.sorted() {
            if new.routes[name] == nil {
                summary.removed.append(name)
            } else if new.routes[name] != old.routes[name] {
                summary.changed.append(name)
            }
        }

        // New consoles first: if one cannot be opened, nothing has changed yet.
        var opened: [String] = []
        for name in summary.added {
            guard let route = new.routes[name] else { continue }
            do {
                try await self.openConsole(route)
                opened.append(name)
            } catch {
                for name in opened { await self.closeConsole(name, forget: true) }
                throw error
            }
        }
        // Changed consoles are replaced: the old pty goes away with the old route. So are
        // doors (their open connections go on).
        for name in summary.removed + summary.changed {
            await self.closeConsole(name, forget: true)
            self.doorLoop.withLockedValue { $0 }?.remove(route: name)
        }
        var failures: [String] = []
        for name in summary.changed {
            guard let route = new.routes[name] else { continue }
            do {
                try await self.openConsole(route)
            } catch {
                failures.append("\(error)")
            }
        }
        for name in summary.added + summary.changed {
            guard let route = new.routes[name] else { continue }
            do {
                try self.openDoor(route)
            } catch {
                failures.append("\(error)")
            }
        }

        var applied = old
        applied.routes = new.routes
        applied.defaultRoute = new.defaultRoute
        applied.source = new.source
        self.environment.routes.withLockedValue {
            $0 = RouteTable(routes: applied.routes, defaultRoute: applied.defaultRoute)
        }
        self.current.withLockedValue { $0 = applied }
        summary.failures = failures
        return summary
    }

    /// What a reload changed.
    public struct ReloadSummary: Sendable, Equatable, CustomStringConvertible {
        /// Routes that are new.
        public var added: [String] = []
        /// Routes that are gone.
        public var removed: [String] = []
        /// Routes whose target changed.
        public var changed: [String] = []
        /// Top-level keys whose change is not applied until a restart.
        public var needRestart: [String] = []
        /// What could not be applied: changed routes whose new console or door could not be
        /// opened, TLS files that could not be reloaded.
        public var failures: [String] = []

        public var description: String {
            var parts: [String] = []
            if !self.added.isEmpty { parts.append("added \(self.added.joined(separator: ", "))") }
            if !self.removed.isEmpty { parts.append("removed \(self.removed.joined(separator: ", "))") }
            if !self.changed.isEmpty { parts.append("changed \(self.changed.joined(separator: ", "))") }
            if parts.isEmpty { parts.append("routes unchanged") }
            if !self.failures.isEmpty { parts.append("failed: \(self.failures.joined(separator: "; "))") }
            if !self.needRestart.isEmpty {
                parts.append("not applied until restart: \(self.needRestart.joined(separator: ", "))")
            }
            return parts.joined(separator: "; ")
        }
    }

    // MARK: - Consoles

    /// The name a route's pty master has in the service manager's file-descriptor store.
    static func storeName(ofConsole route: String) -> String { "pty.\(route)" }

    /// Opens the pty of a `pty:` route (taking back the one held before a restart, if the
    /// service manager passed it), points its link at the slave and starts its hub.
    private func openConsole(_ route: RouteConfiguration) async throws {
        if case .serial(let options) = route.target {
            try await self.openSerialConsole(route.name, options)
            return
        }
        guard case .pty(let options) = route.target else { return }
        let storeName = Self.storeName(ofConsole: route.name)
        let pty: PseudoTerminal
        var stored = false
        let restored = self.passed.claim(name: storeName)
        do {
            if let first = restored.first {
                for extra in restored.dropFirst() { close(extra.descriptor) }
                do {
                    pty = try PseudoTerminal.adopt(master: first.descriptor)
                } catch {
                    close(first.descriptor)
                    self.notifier.removeStored(name: storeName)
                    throw error
                }
                stored = true
            } else {
                pty = try PseudoTerminal.open()
                stored = self.notifier.store(descriptor: pty.master, name: storeName)
            }
        } catch {
            throw BridgeStartupError("route '\(route.name)': \(error)")
        }
        let hub: ConsoleHub
        do {
            try ConsoleLink.install(link: options.link, target: pty.slavePath, mode: options.mode, group: options.group)
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
            close(pty.slaveKeeper)
            throw BridgeStartupError("route '\(route.name)': \(error)")
        }
        self.consoles.withLockedValue { $0[route.name] = OpenConsole(pty: pty, options: options, stored: stored) }
        self.environment.consoles.withLockedValue { $0[route.name] = hub }
        self.logger.info(
            restored.isEmpty ? "console ready" : "console taken back from the service manager",
            metadata: ["route": "\(route.name)", "link": "\(options.link)", "pty": "\(pty.slavePath)"]
        )
    }

    /// Closes one console. `forget`: the route is gone for good, so its link is removed and the
    /// service manager drops its stored copy; otherwise (shutdown) a stored console keeps its
    /// link for the next start.
    private func closeConsole(_ name: String, forget: Bool) async {
        if await self.closeSerialConsole(name, forget: forget) { return }
        let hub = self.environment.consoles.withLockedValue { $0.removeValue(forKey: name) }
        try? await hub?.close().get()
        guard let console = self.consoles.withLockedValue({ $0.removeValue(forKey: name) }) else { return }
        if forget || !console.stored {
            ConsoleLink.remove(link: console.options.link, target: console.pty.slavePath)
        }
        if forget && console.stored {
            self.notifier.removeStored(name: Self.storeName(ofConsole: name))
        }
        close(console.pty.slaveKeeper)
    }

    /// Closes every console (on shutdown or a failed start).
    private func closeConsoles() async {
        await self.closeControlSocket()
        let names =
            self.consoles.withLockedValue { Array($0.keys) } + self.serialConsoles.withLockedValue { Array($0.keys) }
        for name in names { await self.closeConsole(name, forget: false) }
    }

    /// Stored consoles of routes that no longer exist: closed, and dropped from the store.
    private func releaseStaleConsoles() {
        let stale =
            self.passed.claim(prefix: Self.storeName(ofConsole: ""))
            + self.passed.claim(prefix: Self.storeName(ofSerial: ""))
        for stale in stale {
            close(stale.descriptor)
            self.notifier.removeStored(name: stale.name)
            self.logger.notice(
                "released the stored console of a route that is no longer configured",
                metadata: ["name": "\(stale.name)"]
            )
        }
    }

    /// Claims the sockets the service manager passed as `name` (for the control socket).
    func passedSockets(named name: String) -> [PassedDescriptor] {
        self.passed.claim(name: name)
    }

    // MARK: - Local doors

    /// Opens a route's local door, if it has one, and hands it to the door loop.
    private func openDoor(_ route: RouteConfiguration) throws {
        guard let local = route.local, case .unix(let targetPath) = route.target else { return }
        let listener: CInt
        var socketFile: String?
        switch local.address {
        case .unix(let path):
            listener = path.withCString { jmp_listen_unix($0, 256) }
            guard listener >= 0 else {
                throw BridgeStartupError(
                    "route '\(route.name)': cannot listen on door \(local.address): \(String(cString: strerror(errno)))"
                )
            }
            socketFile = path
            if let mode = local.mode, chmod(path, mode_t(mode)) != 0 {
                let reason = String(cString: strerror(errno))
                close(listener)
                unlink(path)
                throw BridgeStartupError("route '\(route.name)': cannot set mode of door \(path): \(reason)")
            }
        case .systemd(let name):
            let passed = self.passed.claim(name: name)
            guard let socket = passed.first, passed.count == 1, socket.isListeningStreamSocket() else {
                throw BridgeStartupError(
                    "route '\(route.name)': door \(local.address) needs exactly one passed listening stream socket named '\(name)' (got \(passed.count))"
                )
            }
            listener = socket.descriptor
            _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
        case .tcp:
            return  // refused by the loader
        }
        let loop = try self.doorLoop.withLockedValue { loop throws in
            if let loop { return loop }
            // Door connections keep a bridge with exit-idle-time running, like gRPC connections.
            let idleExit = self.idleExit
            let created = try DoorLoop(logger: self.logger) { opened in
                if opened { idleExit?.connectionOpened() } else { idleExit?.connectionClosed() }
            }
            loop = created
            return created
        }
        loop.add(
            Door(
                route: route.name,
                listener: listener,
                address: "\(local.address)",
                targetPath: targetPath,
                splice: local.splice,
                socketFile: socketFile,
                maxConnections: local.maxConnections
            )
        )
        self.logger.info(
            "door open",
            metadata: ["route": "\(route.name)", "door": "\(local.address)", "splice": "\(local.splice)"]
        )
    }

    /// Closes every door and door connection.
    private func stopDoors() async {
        let loop = self.doorLoop.withLockedValue { loop in
            defer { loop = nil }
            return loop
        }
        await loop?.stop()
    }

    // MARK: - Listeners

    private func checkEveryPassedSocketIsUsed() throws {
        let unused = self.passed.unclaimed
        guard !unused.isEmpty else { return }
        let names = unused.map { "'\($0.name)' (fd \($0.descriptor))" }.joined(separator: ", ")
        throw BridgeStartupError(
            "the service manager passed sockets the configuration does not use: \(names); "
                + "add a listener 'systemd:NAME' for each, or remove them from the socket unit"
        )
    }

    private func bind(_ listener: ListenerConfiguration, verifier: TokenVerifier?) async throws -> [any Channel] {
        let tls = try listener.tls.map { files throws(BridgeStartupError) in
            try TLSContextBox(files: files, listener: "\(listener.address)")
        }
        if let tls { self.tlsContexts.withLockedValue { $0.append(tls) } }
        let security = self.security(of: listener, verifier: verifier)
        let bootstrap = self.bootstrap(tls: tls, security: security)
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
                let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
                    .get()
                if let mode = listener.mode, chmod(path, mode_t(mode)) != 0 {
                    let reason = String(cString: strerror(errno))
                    try? await channel.close()
                    throw BridgeStartupError("cannot set mode \(String(mode, radix: 8)) on \(path): \(reason)")
                }
                if let group = listener.group {
                    do {
                        try Self.setGroup(group, of: path)
                    } catch {
                        try? await channel.close()
                        throw error
                    }
                }
                return [channel]
            case .systemd(let name):
                // TLS is for the network: passed Unix sockets (protected by the unit's
                // SocketMode=/SocketGroup=) are served plain, TCP ones with the listener's TLS.
                return try await self.adopt(
                    listener,
                    name: name,
                    tls: bootstrap,
                    plain: tls == nil ? bootstrap : self.bootstrap(tls: nil, security: security)
                )
            }
        } catch let error as BridgeStartupError {
            throw error
        } catch {
            throw BridgeStartupError("cannot listen on \(listener.address): \(Self.describe(error))")
        }
    }

    /// A server bootstrap whose connections get the pipeline for `tls` and `security`.
    private func bootstrap(tls: TLSContextBox?, security: ListenerSecurity) -> ServerBootstrap {
        let pipeline = ConnectionPipeline(
            environment: self.environment,
            tls: tls,
            graceTime: self.graceTime,
            idleExit: self.idleExit,
            security: security
        )
        let quiescing = self.quiescing
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 256)
            // Reads of up to 256 KiB, one per readiness event: NIOHTTP2's frame decoder copies each
            // read into its own buffer and hands DATA frames up as slices of it, which reach the
            // streams only at the read's end. A second read before that end would find the buffer
            // shared and copy it whole (see GRPCMessageDeframer.ownsMessages); one large read
            // per event keeps that copy to the one of the bytes just read.
            .childChannelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 262_144)
            )
            .childChannelOption(.maxMessagesPerRead, value: 1)
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
        tls: ServerBootstrap,
        plain: ServerBootstrap
    ) async throws -> [any Channel] {
        let sockets = self.passed.claim(name: name)
        guard !sockets.isEmpty else {
            let available = self.passed.unclaimedNames
            throw BridgeStartupError(
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
                    throw BridgeStartupError(
                        "\(listener.address): fd \(socket.descriptor) is not a listening stream socket "
                            + "(use ListenStream= and Accept=no in the socket unit)"
                    )
                }
                let family = socket.socketFamily
                let isTCP = family == AF_INET || family == AF_INET6
                if isTCP && listener.tls == nil && !listener.insecure {
                    throw BridgeStartupError(
                        "\(listener.address) is a TCP socket: it needs 'tls: {cert, key}' or, for plain TCP, 'insecure: true'"
                    )
                }
                if isTCP, listener.effectiveAuth(jwtConfigured: self.configuration.jwt != nil) == .none {
                    guard listener.allowUnauthenticated else {
                        throw BridgeStartupError(
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

    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }

    /// The address `channel` is bound to: a `tcp:` listener keeps its configured host with the
    /// real port; a passed socket is named by its own address (`tcp:IP:PORT` or `unix:PATH`).
    static func boundAddress(of channel: any Channel, configured: ListenAddress) -> ListenAddress {
        guard let local = channel.localAddress else { return configured }
        if let port = local.port {
            if case .tcp(let host, _) = configured { return .tcp(host: host, port: port) }
            if let ip = local.ipAddress { return .tcp(host: ip, port: port) }
        }
        if let path = local.pathname, !path.isEmpty { return .unix(path: path) }
        return configured
    }
}
