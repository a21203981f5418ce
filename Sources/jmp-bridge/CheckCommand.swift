import ArgumentParser
import JMPBridgeCore

/// `jmp-bridge check`: validates a configuration file without starting anything.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a configuration file.",
        discussion: "Prints FILE:LINE: KEY: PROBLEM and exits 1 if the file is broken; exits 0 if it is fine."
    )

    @Option(name: .shortAndLong, help: ArgumentHelp("The configuration file.", valueName: "file"))
    var config: String = ConfigurationLoader.defaultPath

    @Flag(
        help: ArgumentHelp(
            "Also load the TLS certificates, keys and CA files and the jwt key file, as serve does at start, "
                + "and check that the unix sockets and console links serve creates can be created.",
            discussion: "Run it as the user the bridge runs as, so that the files' permissions are checked too. "
                + "A certificate or CA file that expires within 14 days, or has expired, and a serial device "
                + "that cannot be opened are warned of on stderr."
        )
    )
    var files = false

    func run() async throws {
        do {
            var configuration = try ConfigurationLoader.load(path: self.config)
            try configuration.finalize()
            let loaded = self.files ? try await configuration.loadFiles() : nil
            let routes = configuration.routes.keys.sorted().joined(separator: ", ")
            print(
                "\(self.config): OK: \(configuration.listeners.count) listener(s), "
                    + "\(configuration.routes.count) route(s)\(routes.isEmpty ? "" : " (\(routes))")"
                    + (configuration.defaultRoute.map { ", default route \($0)" } ?? "")
                    + (configuration.gateway.map {
                        ", gateway on \($0.listener.address) for controller \($0.controller) (\($0.controllerTrust))"
                    } ?? "")
                    + (configuration.metrics.map { ", metrics on \($0)" } ?? "")
                    + (loaded.map { ", \($0.count) file(s) loaded" } ?? "")
            )
            // Not a failure: serve starts with such a certificate, but its clients refuse it soon.
            for warning in loaded?.warnings() ?? [] { printMessage("warning: \(warning)") }
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
