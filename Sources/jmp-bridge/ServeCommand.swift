import ArgumentParser
import CoreMetrics
import JMPBridgeCore
import JMPProtocol
import JMPSystemd
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

/// `jmp-bridge serve`: runs the bridge until SIGTERM or SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve RouterService.Stream and bridge each stream to its route's target.",
        discussion: """
            Reads the configuration file if one is given (or if the default file exists and no \
            --listen/--route is given), then adds the listeners and routes named on the command \
            line. SIGTERM and SIGINT stop accepting and let open streams finish; SIGHUP re-reads the \
            configuration file and applies route changes. Under systemd, sockets passed by socket \
            activation serve as systemd:NAME listeners (every socket named grpc, or unnamed, when \
            no listener is configured), and readiness, status and the watchdog go through sd_notify.
            """
    )

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp("The configuration file (default \(ConfigurationLoader.defaultPath)).", valueName: "file")
    )
    var config: String?

    @Option(
        name: .customLong("listen"),
        help: ArgumentHelp(
            "Listen on tcp:HOST:PORT, unix:PATH or systemd:NAME (repeatable).",
            valueName: "address"
        )
    )
    var listen: [String] = []

    @Option(
        name: .customLong("route"),
        help: ArgumentHelp(
            "Add a route: NAME=unix:PATH, NAME=pty:LINK or NAME=serial:DEVICE[,baud=N,…] (repeatable).",
            valueName: "name=target"
        )
    )
    var route: [String] = []

    @Option(
        name: .customLong("local"),
        help: ArgumentHelp(
            "Give a unix: route a local door, e.g. session=unix:/run/jmp-bridge/session.door (repeatable).",
            valueName: "name=address"
        )
    )
    var local: [String] = []

    @Option(
        name: .customLong("control"),
        help: ArgumentHelp("Serve the control socket (attach, status) at unix:PATH or PATH.", valueName: "path")
    )
    var control: String?

    @Option(
        name: .customLong("metrics"),
        help: ArgumentHelp(
            "Serve Prometheus metrics (GET /metrics) at tcp:HOST:PORT, unix:PATH or systemd:NAME.",
            valueName: "address"
        )
    )
    var metrics: String?

    @Option(
        name: .customLong("default-route"),
        help: ArgumentHelp("The route for streams without jmp-route.", valueName: "name")
    )
    var defaultRoute: String?

    @Option(
        name: .customLong("tls-cert"),
        help: ArgumentHelp(
            "TLS certificate (PEM) for the tcp: addresses given with --listen (not those in the file).",
            valueName: "file"
        )
    )
    var tlsCert: String?

    @Option(
        name: .customLong("tls-key"),
        help: ArgumentHelp("TLS private key (PEM) for the tcp: addresses given with --listen.", valueName: "file")
    )
    var tlsKey: String?

    @Flag(
        name: .customLong("insecure"),
        help: "Serve the tcp: addresses given with --listen without TLS (when --tls-cert is not given)."
    )
    var insecure = false

    @Flag(
        name: .customLong("allow-unauthenticated"),
        help: "Serve the tcp: addresses given with --listen without authentication (when no jwt: key is configured)."
    )
    var allowUnauthenticated = false

    @Option(
        name: .customLong("max-connections"),
        help: ArgumentHelp(
            "Connections served at once on each address given with --listen (1 to 65536, default 1024).",
            valueName: "count"
        )
    )
    var maxConnections: Int?

    @Option(
        name: .customLong("jwt-key-file"),
        help: ArgumentHelp(
            "Require router JWTs signed with the shared secret in this file (unless the file has a jwt: section).",
            valueName: "file"
        )
    )
    var jwtKeyFile: String?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level")
    )
    var logLevel: String = "info"

    @Option(
        name: .customLong("grace"),
        help: ArgumentHelp("Seconds open streams get to finish on shutdown.", valueName: "seconds")
    )
    var grace: Int = 30

    @Option(
        name: .customLong("exit-idle-time"),
        help: ArgumentHelp(
            "Exit after this many seconds without a client connection (for socket activation).",
            valueName: "seconds"
        )
    )
    var exitIdleTime: Int?

    func validate() throws {
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError(
                "--log-level: '\(self.logLevel)' is not one of trace, debug, info, notice, warning, error, critical"
            )
        }
        guard (self.tlsCert == nil) == (self.tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        guard self.grace >= 0 else { throw ValidationError("--grace must not be negative") }
        if let seconds = self.exitIdleTime, seconds <= 0 {
            throw ValidationError("--exit-idle-time must be a positive number of seconds")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: self.logLevel) ?? .info
        let journal = JournalLogHandler.isStandardErrorJournal()
        LoggingSystem.bootstrap { label in
            if journal {
                var handler = JournalLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "jmp-bridge")
        let malloc = MallocTuning.startup
        if malloc == .refused {
            logger.warning("\(MallocTuning.describe(malloc))")
        } else {
            logger.debug("\(MallocTuning.describe(malloc))")
        }
        let notifier = ServiceNotifier(logger: logger)
        /// Startup errors: on a terminal as `jmp-bridge: error: ...`; in the journal at error
        /// priority, and as the unit's status.
        func fail(_ error: any Error) -> ExitCode {
            if journal {
                logger.error("\(error)")
            } else {
                printError("\(error)")
            }
            notifier.status("failed: \(error)")
            return ExitCode(1)
        }

        let configuration: BridgeConfiguration
        let passed: PassedDescriptors
        do {
            passed = try PassedDescriptors.fromEnvironment()
            configuration = try self.makeConfiguration(passed: passed)
        } catch {
            throw fail(error)
        }

        let server = BridgeServer(
            configuration: configuration,
            graceTime: .seconds(Int64(self.grace)),
            passedDescriptors: passed,
            notifier: notifier,
            version: BuildInfo.version,
            logger: logger
        )
        if let metrics = server.metrics {
            // Whatever reports through swift-metrics lands on the same endpoint.
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry))
        }
        do {
            try await server.start()
        } catch {
            throw fail(error)
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await _ in hangups {
                    await self.reload(server, passed: passed, notifier: notifier, logger: logger)
                }
            }
            do {
                try await group.run()
            } catch {
                // A part of the bridge died (BridgeServer.fail): say why, exit non-zero.
                tasks.cancelAll()
                throw fail(error)
            }
            tasks.cancelAll()
        }
    }

    /// SIGHUP: re-reads the configuration and applies it; a broken file leaves the running
    /// configuration in place and says why, in the log and in the service manager's status.
    func reload(
        _ server: BridgeServer,
        passed: PassedDescriptors,
        notifier: ServiceNotifier,
        logger: Logger
    ) async {
        notifier.reloading(status: "reloading the configuration")
        logger.info("SIGHUP: reloading the configuration", metadata: ["file": "\(self.configurationFile ?? "none")"])
        do {
            let configuration = try self.makeConfiguration(
                passed: passed,
                currentListeners: server.configuration.listeners
            )
            var summary = try await server.reload(to: configuration)
            // Renewed certificates: new connections get them, open ones keep theirs.
            do {
                try server.reloadTLS()
            } catch {
                summary.failures.append("TLS files not reloaded: \(error)")
            }
            if !summary.failures.isEmpty {
                logger.error("configuration reloaded, with failures", metadata: ["changes": "\(summary)"])
            } else if summary.needRestart.isEmpty {
                logger.info("configuration reloaded", metadata: ["changes": "\(summary)"])
            } else {
                logger.warning(
                    "configuration reloaded; some changes wait for a restart",
                    metadata: ["changes": "\(summary)"]
                )
            }
            notifier.ready(status: "reloaded (\(summary)); \(server.statusLine())")
        } catch {
            logger.error("reload failed; still serving the previous configuration", metadata: ["error": "\(error)"])
            notifier.ready(status: "reload failed, previous configuration still in use: \(error)")
        }
    }

    /// The configuration file `serve` reads, if any.
    var configurationFile: String? {
        if let path = self.config { return path }
        if self.listen.isEmpty && self.route.isEmpty, fileExists(ConfigurationLoader.defaultPath) {
            return ConfigurationLoader.defaultPath
        }
        return nil
    }

    /// Merges the configuration file and the command line, then validates the result.
    ///
    /// With no listener configured, every socket the service manager passed named `grpc` (or
    /// unnamed) becomes a `systemd:` listener (jmp-bridge(8), SYSTEMD). On reload the passed sockets are taken
    /// already: a file without listeners keeps `currentListeners`.
    func makeConfiguration(
        passed: PassedDescriptors = PassedDescriptors(),
        currentListeners: [ListenerConfiguration] = []
    ) throws(ConfigurationError) -> BridgeConfiguration {
        var configuration = BridgeConfiguration()
        if self.maxConnections != nil, self.listen.isEmpty {
            // Not silently ignored: the file's listeners have their own key.
            throw ConfigurationError(
                file: "command line",
                key: "--max-connections",
                "applies to the addresses given with --listen; the file's listeners take 'max-connections:'"
            )
        }
        if let path = self.configurationFile {
            configuration = try ConfigurationLoader.load(path: path)
        }
        for text in self.listen {
            let address: ListenAddress
            switch ListenAddress.parse(text) {
            case .success(let parsed): address = parsed
            case .failure(let problem):
                throw ConfigurationError(file: "command line", key: "--listen", problem.description)
            }
            var listener = ListenerConfiguration(address: address)
            listener.allowUnauthenticated = self.allowUnauthenticated
            if let count = self.maxConnections {
                guard (1...65536).contains(count) else {
                    throw ConfigurationError(
                        file: "command line",
                        key: "--max-connections",
                        "\(count) is not between 1 and 65536"
                    )
                }
                listener.maxConnections = count
            }
            if case .tcp = address {
                if let cert = self.tlsCert, let key = self.tlsKey {
                    listener.tls = TLSFiles(certificate: cert, key: key)
                } else if self.insecure {
                    listener.insecure = true
                } else {
                    throw ConfigurationError(
                        file: "command line",
                        key: "--listen",
                        "\(address) needs --tls-cert and --tls-key, or --insecure for plain TCP"
                    )
                }
            }
            configuration.listeners.append(listener)
        }
        for text in self.route {
            guard let equals = text.firstIndex(of: "=") else {
                throw ConfigurationError(file: "command line", key: "--route", "'\(text)' is not NAME=TARGET")
            }
            let name = String(text[..<equals])
            guard RouterService.isValidRouteName(name) else {
                throw ConfigurationError(
                    file: "command line",
                    key: "--route",
                    "'\(name)' is not a valid route name ([A-Za-z0-9._-]{1,64})"
                )
            }
            let target = try RouteTarget.parse(String(text[text.index(after: equals)...]))
            configuration.routes[name] = RouteConfiguration(name: name, target: target)
        }
        for text in self.local {
            guard let equals = text.firstIndex(of: "=") else {
                throw ConfigurationError(file: "command line", key: "--local", "'\(text)' is not NAME=ADDRESS")
            }
            let name = String(text[..<equals])
            guard case .unix = configuration.routes[name]?.target else {
                throw ConfigurationError(file: "command line", key: "--local", "no unix: route named '\(name)'")
            }
            switch ListenAddress.parse(String(text[text.index(after: equals)...])) {
            case .success(.tcp):
                throw ConfigurationError(file: "command line", key: "--local", "a door is unix:PATH or systemd:NAME")
            case .success(let address):
                configuration.routes[name]?.local = LocalDoorConfiguration(address: address)
            case .failure(let problem):
                throw ConfigurationError(file: "command line", key: "--local", problem.description)
            }
        }
        if let name = self.defaultRoute {
            configuration.defaultRoute = name
        }
        if let keyFile = self.jwtKeyFile, configuration.jwt == nil {
            configuration.jwt = JWTConfiguration(keyFile: keyFile)
        }
        if let control = self.control {
            configuration.control = try RouteTarget.parseControl(control).get()
        }
        if let metrics = self.metrics {
            switch ListenAddress.parse(metrics) {
            case .success(let address): configuration.metrics = address
            case .failure(let problem):
                throw ConfigurationError(file: "command line", key: "--metrics", problem.description)
            }
        }
        if self.config == nil && !self.listen.isEmpty {
            configuration.source = "command line"
        }
        if let seconds = self.exitIdleTime {
            configuration.exitIdleTime = .seconds(Int64(seconds))
        }
        if configuration.listeners.isEmpty {
            if !currentListeners.isEmpty {
                configuration.listeners = currentListeners
            } else {
                for name in ["grpc", "unknown"] where passed.contains(name: name) {
                    configuration.listeners.append(ListenerConfiguration(address: .systemd(name: name)))
                }
            }
        }
        try configuration.finalize()
        return configuration
    }
}
