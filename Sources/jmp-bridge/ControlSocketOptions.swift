import ArgumentParser
import JMPBridgeCore

/// How `attach` and `status` find the bridge's control socket.
struct ControlSocketOptions: ParsableArguments {
    /// Where the control socket is when nothing says otherwise.
    static let defaultPath = "/run/jmp-bridge/control.sock"

    @Option(
        name: .customLong("control"),
        help: ArgumentHelp(
            "The control socket (default: from the configuration, else \(defaultPath)).",
            valueName: "path"
        )
    )
    var control: String?

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp("Read the control socket's path from this configuration file.", valueName: "file")
    )
    var config: String?

    /// --control, else the `control:` key of --config (or of the default file, if it exists),
    /// else ``defaultPath``.
    func socketPath() throws(ConfigurationError) -> String {
        if let control = self.control {
            switch RouteTarget.parseControl(control) {
            case .success(let path): return path
            case .failure(let problem): throw problem
            }
        }
        if let config = self.config {
            let configuration = try ConfigurationLoader.load(path: config)
            guard let path = configuration.control else {
                throw ConfigurationError(file: config, key: "control", "no control socket is configured")
            }
            // A passed socket's path is in the socket unit, not here: the units put it at the default.
            return path.hasPrefix("systemd:") ? Self.defaultPath : path
        }
        if fileExists(ConfigurationLoader.defaultPath),
            let path = try? ConfigurationLoader.load(path: ConfigurationLoader.defaultPath).control
        {
            return path.hasPrefix("systemd:") ? Self.defaultPath : path
        }
        return Self.defaultPath
    }
}
