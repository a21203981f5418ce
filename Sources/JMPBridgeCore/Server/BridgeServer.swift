import JMPGateway
import JMPMetrics
import JMPSystemd
import JMPTLS
import JMPTargets
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The gRPC side of the bridge: binds every configured listener and serves RouterService.Stream
/// on each, until a graceful shutdown closes the listeners and lets open streams finish.
///
/// Under systemd it also takes its sockets and consoles from the service manager (socket
/// activation and the file-descriptor store), reports readiness, status and liveness, and
/// applies a new configuration on ``reload(to:)``.
///
/// The server runs the life cycle; its parts are the ``BridgeListeners`` (gRPC listeners and the
/// control socket), the ``ConsoleRegistry`` (the consoles of `pty:` and `serial:` routes) and the
/// ``LocalDoors`` of `unix:` routes.
public final class BridgeServer: Service, Sendable {
    /// The configuration served (the routes of the last successful reload).
    public var configuration: BridgeConfiguration { self.current.withLockedValue { $0 } }
    /// Counters across all streams.
    public let statistics = BridgeStatistics()
    /// The Prometheus metrics; nil: no metrics endpoint configured.
    public var metrics: BridgeMetrics? { self.environment.metrics }
    /// How long open streams may take to finish after a graceful shutdown starts.
    public let graceTime: TimeAmount

    private let current: NIOLockedValueBox<BridgeConfiguration>
    private let group: any EventLoopGroup
    private let logger: Logger
    let environment: BridgeContext
    private let notifier: ServiceNotifier
    private let idleExit: IdleExitTimer?
    /// The drain, once one began (a signal, idleness, a failure or ``shutdown()``), and who waits
    /// for one to begin.
    private let drain = NIOLockedValueBox(Drain())
    /// Why the bridge stops with an error (a part of it died), once it does.
    private let failure = NIOLockedValueBox<String?>(nil)
    private let listeners: BridgeListeners
    private let consoles: ConsoleRegistry
    private let doors: LocalDoors
    /// Warns of TLS certificates about to expire; checks at start, on reload and daily.
    var certificateWatch: CertificateWatch {
        CertificateWatch(environment: self.environment, interval: .seconds(86_400), logger: self.logger)
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
        version: String = "unknown",
        logger: Logger
    ) {
        self.current = NIOLockedValueBox(configuration)
        self.group = group
        self.logger = logger
        self.graceTime = graceTime
        let notifier = notifier ?? ServiceNotifier(logger: logger)
        self.notifier = notifier
        let idleExit = configuration.exitIdleTime.map { IdleExitTimer(idleTime: $0, eventLoop: group.next()) }
        self.idleExit = idleExit
        let doors = LocalDoors(passed: passedDescriptors, idleExit: idleExit, logger: logger)
        self.doors = doors
        let environment = BridgeContext(
            routes: RouteTable(routes: configuration.routes, defaultRoute: configuration.defaultRoute),
            limits: configuration.limits,
            linger: configuration.linger,
            statistics: self.statistics,
            logger: logger,
            metrics: configuration.metrics.map { _ in BridgeMetrics(version: version) },
            doorStatistics: { doors.statistics }
        )
        self.environment = environment
        self.listeners = BridgeListeners(
            environment: environment,
            group: group,
            graceTime: graceTime,
            idleExit: idleExit,
            passed: passedDescriptors,
            logger: logger
        )
        self.consoles = ConsoleRegistry(
            environment: environment,
            passed: passedDescriptors,
            notifier: notifier,
            group: group,
            logger: logger
        )
        self.doors.onFailure = { [weak self] reason in self?.fail("the local doors' event loop died (\(reason))") }
    }

    /// A drain and the tasks waiting for one to begin.
    private struct Drain {
        var future: EventLoopFuture<Void>?
        var waiters: [CheckedContinuation<EventLoopFuture<Void>, Never>] = []
    }

    /// Opens every console and binds every listener. If one fails, what was already opened is
    /// closed again and the error says which listener or route and why. Sockets passed by the
    /// service manager that the configuration does not use are an error too. Returns the bound
    /// addresses (a `tcp:` port 0 resolved).
    @discardableResult
    public func start() async throws -> [ListenAddress] {
        let configuration = self.configuration
        // Security before anything else: a bad key file opens nothing, and a listener that
        // asks for JWT never runs without a verifier.
        try configuration.validateSecurity()
        let verifier = try await BridgeListeners.loadVerifier(configuration.jwt)
        let routes = configuration.routes.values.sorted(by: { $0.name < $1.name })
        let bound: [BoundListener]
        // Consoles first: a stream may arrive the moment a listener is bound.
        do {
            for route in routes {
                try await self.consoles.open(route)
            }
            self.consoles.releaseStale()
            for route in routes {
                try self.doors.open(route)
            }
            try await self.listeners.bindControlSocket(configuration.control)
            if let metrics = self.environment.metrics {
                let collector = MetricsCollector(environment: self.environment, metrics: metrics)
                let address = try await self.listeners.bindMetrics(configuration.metrics, collector: collector)
                self.environment.metricsAddress.withLockedValue { $0 = address }
            }
            bound = try await self.listeners.bind(configuration, verifier: verifier)
        } catch {
            await self.closeConsoles()
            await self.doors.stop()
            throw error
        }
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
        self.certificateWatch.check()
        return bound.map(\.address)
    }

    /// Serves until a graceful shutdown (SIGTERM or SIGINT under a ServiceGroup) or, with
    /// `exit-idle-time`, until no client has been connected for that long; then stops accepting
    /// and waits up to ``graceTime`` for open streams.
    public func run() async throws {
        if !self.listeners.isBound {
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
        if let idleExit = self.idleExit, let idleTime = configuration.exitIdleTime {
            idleExit.start {
                self.logger.info("exiting: no client connected", metadata: ["exit-idle-time": "\(idleTime)"])
                self.notifier.stopping(status: "exiting: idle")
                self.beginShutdown()
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
        let watch = self.certificateWatch
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await reporter.run() }
            tasks.addTask { await trimmer.run() }
            tasks.addTask { await watch.run() }
            try await withGracefulShutdownHandler {
                // Whatever begins the drain (a signal, idleness, a failure, shutdown()), run()
                // waits for that one drain to end; a cancelled run() begins it.
                let drain = await withTaskCancellationHandler {
                    await self.drainBegun()
                } onCancel: {
                    self.beginShutdown()
                }
                try await drain.get()
            } onGracefulShutdown: {
                let open = self.statistics.activeStreams.load(ordering: .relaxed)
                self.notifier.stopping(status: "stopping: draining \(Self.count(open, "open stream"))")
                self.logger.info(
                    "shutting down: no new connections; open streams may finish",
                    metadata: ["open-streams": "\(open)", "grace": "\(self.graceTime)"]
                )
                self.beginShutdown()
            }
            tasks.cancelAll()
        }
        await self.closeConsoles()
        await self.doors.stop()
        if let reason = self.failure.withLockedValue({ $0 }) {
            self.logger.critical("stopped after a failure", metadata: ["reason": "\(reason)"])
            throw BridgeError(reason)
        }
        self.logger.info("stopped")
    }

    /// Stops accepting and closes every connection after the grace time. When a drain is already
    /// running (a signal arrived first), waits for that one.
    public func shutdown() async throws {
        try await self.beginShutdown().get()
        await self.closeConsoles()
        await self.doors.stop()
    }

    /// Stops the bridge because a part of it died: STATUS= says why, the drain begins, and
    /// ``run()`` then throws, so the process exits non-zero and a service manager restarts it.
    /// Only the first failure counts.
    func fail(_ reason: String) {
        let first = self.failure.withLockedValue { failure -> Bool in
            guard failure == nil else { return false }
            failure = reason
            return true
        }
        guard first else { return }
        self.logger.critical("stopping: \(reason)")
        self.notifier.stopping(status: "failed: \(reason)")
        self.beginShutdown()
    }

    /// Starts the drain once, whichever of a signal, idleness, a failure or ``shutdown()`` asks
    /// first; every request gets the future of that one drain.
    @discardableResult
    private func beginShutdown() -> EventLoopFuture<Void> {
        let promise = self.group.any().makePromise(of: Void.self)
        let (running, waiters) = self.drain.withLockedValue { drain in
            if let future = drain.future {
                return (Optional(future), [CheckedContinuation<EventLoopFuture<Void>, Never>]())
            }
            drain.future = promise.futureResult
            defer { drain.waiters = [] }
            return (nil, drain.waiters)
        }
        if let running {
            promise.succeed()  // not used: the drain already running is the one to wait for
            return running
        }
        self.environment.state.withLockedValue { $0 = .stopping }
        self.idleExit?.stop()
        self.doors.remove(self.configuration.routes.keys)
        self.listeners.initiateShutdown(promise: promise)
        // An exporter's Listen and Status calls never end by themselves: end them now (the
        // exporter calls again, to the next bridge), while relays finish within the grace time.
        self.environment.gateway.withLockedValue { $0 }?.gateway.beginDrain()
        for waiter in waiters { waiter.resume(returning: promise.futureResult) }
        return promise.futureResult
    }

    /// The drain's future once one has begun (at once if it has).
    private func drainBegun() async -> EventLoopFuture<Void> {
        await withCheckedContinuation { continuation in
            let future = self.drain.withLockedValue { drain -> EventLoopFuture<Void>? in
                if let future = drain.future { return future }
                drain.waiters.append(continuation)
                return nil
            }
            if let future { continuation.resume(returning: future) }
        }
    }

    /// Closes the control socket and the metrics endpoint, then every console (on shutdown or a
    /// failed start).
    private func closeConsoles() async {
        await self.listeners.closeControlSocket()
        await self.listeners.closeMetrics()
        await self.consoles.closeAll()
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
            + self.certificateNotes().map { "; \($0)" }.joined()
    }

    /// For the status line: each TLS listener whose certificate expires within the warning
    /// period, or has expired (``CertificateValidity``), then each CA file (a listener's
    /// `client-ca`, the gateway's `ca`, each file once) and each upstream server of the gateway
    /// whose certificate does, so that `systemctl status` shows it.
    private func certificateNotes(now: Int64 = CertificateValidity.now()) -> [String] {
        let listeners = self.environment.tlsContexts.withLockedValue { $0 }.compactMap { tls in
            CertificateValidity.note(of: tls.listener, notValidAfter: tls.validity.notValidAfter, now: now)
        }
        let authorities = self.environment.authorities.compactMap { $0.authorityNote(now: now) }
        let gateway = self.environment.gateway.withLockedValue { $0 }?.gateway
        return listeners + authorities + (gateway?.upstreamCertificates() ?? []).compactMap { $0.note(now: now) }
    }

    /// "1 stream", "2 streams".
    static func count(_ number: Int, _ noun: String) -> String { "\(number) \(noun)\(number == 1 ? "" : "s")" }

    // MARK: - Reloading

    /// Applies a new configuration without a restart (the ``ReloadPlan`` from the one in force):
    /// routes added, removed or changed take effect at once; streams already open keep running
    /// (a stream on a console route that was removed or changed is ended with UNAVAILABLE, as
    /// its console goes away). Listener, limit, linger and exit-idle-time changes need a restart
    /// and are reported as such.
    ///
    /// Returns what changed, for the log and the status line. A new route whose console cannot
    /// be opened makes the whole reload fail before anything is changed; a changed route whose
    /// new console cannot be opened is down afterwards, listed in ``ReloadSummary/failures``.
    @discardableResult
    public func reload(to new: BridgeConfiguration) async throws -> ReloadSummary {
        let plan = ReloadPlan(from: self.configuration, to: new)

        // New consoles first: if one cannot be opened, nothing has changed yet.
        var opened: [String] = []
        for name in plan.added {
            guard let route = new.routes[name] else { continue }
            do {
                try await self.consoles.open(route)
                opened.append(name)
            } catch {
                for name in opened { await self.consoles.close(name, forget: true) }
                throw error
            }
        }
        // Changed consoles are replaced: the old pty goes away with the old route. So are
        // doors (their open connections go on).
        for name in plan.removed + plan.changed {
            await self.consoles.close(name, forget: true)
            self.doors.remove([name])
        }
        var failures: [String] = []
        for name in plan.changed {
            guard let route = new.routes[name] else { continue }
            do {
                try await self.consoles.open(route)
            } catch {
                failures.append("\(error)")
            }
        }
        for name in plan.added + plan.changed {
            guard let route = new.routes[name] else { continue }
            do {
                try self.doors.open(route)
            } catch {
                failures.append("\(error)")
            }
        }

        let applied = plan.result
        self.environment.routes.withLockedValue {
            $0 = RouteTable(routes: applied.routes, defaultRoute: applied.defaultRoute)
        }
        self.current.withLockedValue { $0 = applied }
        return ReloadSummary(
            added: plan.added,
            removed: plan.removed,
            changed: plan.changed,
            needRestart: plan.needRestart,
            failures: failures
        )
    }

    /// Re-reads the certificate, key and client CA of every TLS listener, and the gateway's CA
    /// files (for SIGHUP).
    ///
    /// Connections accepted or made afterwards use the new files; established connections and
    /// their streams are not touched. All or nothing: if any file cannot be loaded (missing,
    /// unreadable, or a key that does not fit its certificate), nothing changes and the error
    /// says which file is wrong. Returns how many listeners were reloaded. A certificate that
    /// expires within two weeks, or has expired, is logged (``CertificateWatch``).
    @discardableResult
    public func reloadTLS() throws(BridgeError) -> Int {
        let gateway = self.environment.gateway.withLockedValue { $0 }?.gateway
        let trust: Gateway.Trust?
        do {
            trust = try gateway?.loadTrust()
        } catch {
            throw BridgeError("gateway: \(error)")
        }
        let count = try self.listeners.reloadTLS()
        var metadata: Logger.Metadata = ["listeners": "\(count)"]
        if let gateway, let trust {
            gateway.install(trust)
            metadata["gateway-ca-files"] = "\(gateway.authorities.count)"
        }
        self.logger.info("TLS certificates reloaded", metadata: metadata)
        self.certificateWatch.check()
        return count
    }
}
