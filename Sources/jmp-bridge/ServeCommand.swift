import ArgumentParser
import JMPBridgeCore
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// `jmp-bridge serve`: runs the bridge until SIGTERM or SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve RouterService.Stream and bridge each stream to its route's target.",
        discussion: """
            Reads the configuration file if one is given (or if the default file exists and no \
            --listen/--route is given), then adds the listeners and routes named on the command \
            line. SIGTERM and SIGINT stop accepting and let open streams finish.
            """
    )

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp("The configuration file (default \(ConfigurationLoader.defaultPath)).", valueName: "file")
    )
    var config: String?

    @Option(
        name: .customLong("listen"),
        help: ArgumentHelp("Listen on tcp:HOST:PORT or unix:PATH (repeatable).", valueName: "address")
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
        name: .customLong("control"),
        help: ArgumentHelp("Serve the control socket (attach, status) at unix:PATH or PATH.", valueName: "path")
    )
    var control: String?

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
    }

    func run() async throws {
        let level = Logger.Level(rawValue: self.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "jmp-bridge")

        let configuration: BridgeConfiguration
        do {
            configuration = try self.makeConfiguration()
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }

        let server = BridgeServer(configuration: configuration, graceTime: .seconds(Int64(self.grace)), logger: logger)
        do {
            try await server.start()
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        // Until reloading exists, a stray SIGHUP (e.g. `systemctl reload`) must not kill the
        // daemon and every console with it.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await _ in hangups {
                    logger.warning("SIGHUP ignored: reloading the configuration is not supported yet")
                }
            }
            try await group.run()
            tasks.cancelAll()
        }
    }

    /// Merges the configuration file and the command line, then validates the result.
    func makeConfiguration() throws(ConfigurationError) -> BridgeConfiguration {
        var configuration = BridgeConfiguration()
        if let path = self.config {
            configuration = try ConfigurationLoader.load(path: path)
        } else if self.listen.isEmpty && self.route.isEmpty, fileExists(ConfigurationLoader.defaultPath) {
            configuration = try ConfigurationLoader.load(path: ConfigurationLoader.defaultPath)
        }
        for text in self.listen {
            let address: ListenAddress
            switch ListenAddress.parse(text) {
            case .success(let parsed): address = parsed
            case .failure(let problem):
                throw ConfigurationError(file: "command line", key: "--listen", problem.description)
            }
            var listener = ListenerConfiguration(address: address)
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
            guard RouteNames.isValid(name) else {
                throw ConfigurationError(
                    file: "command line",
                    key: "--route",
                    "'\(name)' is not a valid route name ([A-Za-z0-9._-]{1,64})"
                )
            }
            let target = try RouteTarget.parse(String(text[text.index(after: equals)...]))
            configuration.routes[name] = RouteConfiguration(name: name, target: target)
        }
        if let name = self.defaultRoute {
            configuration.defaultRoute = name
        }
        if let control = self.control {
            configuration.control = try RouteTarget.parseControl(control).get()
        }
        if self.config == nil && !self.listen.isEmpty {
            configuration.source = "command line"
        }
        try configuration.finalize()
        return configuration
    }
}
