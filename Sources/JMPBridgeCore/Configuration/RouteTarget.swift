import JMPDoors
import NIOCore

/// The local endpoint behind a route.
public enum RouteTarget: Sendable, Equatable, CustomStringConvertible {
    /// A Unix domain stream socket, connected afresh for every stream.
    case unix(path: String)
    /// A pty the bridge owns, shared by every stream attached to the route.
    case pty(PtyConfiguration)
    /// A serial device the bridge holds open, shared by every stream attached to the route.
    case serial(SerialConfiguration)

    /// The `max-attachments` of a console route; nil: no limit, or not a console.
    public var maxAttachments: Int? {
        switch self {
        case .pty(let pty): return pty.maxAttachments
        case .serial(let serial): return serial.maxAttachments
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .pty(let pty): return "pty:\(pty.link)"
        case .serial(let serial): return "serial:\(serial.device)"
        }
    }

    /// Whether streams on this target attach to a console (pty or serial) rather than connect.
    public var isConsole: Bool {
        if case .unix = self { return false }
        return true
    }

    /// Parses the command-line forms `unix:PATH`, `pty:LINK` and `serial:DEVICE[,KEY=VALUE]…`.
    public static func parse(_ text: String) throws(ConfigurationError) -> RouteTarget {
        if text.hasPrefix("serial:") {
            return .serial(try SerialConfiguration.parse(commandLine: String(text.dropFirst(7))))
        }
        if text.hasPrefix("pty:") {
            let link = String(text.dropFirst(4))
            guard link.hasPrefix("/") else {
                throw ConfigurationError(file: "command line", key: "--route", "'\(link)' must be an absolute path")
            }
            return .pty(PtyConfiguration(link: link))
        }
        guard text.hasPrefix("unix:") else {
            throw ConfigurationError(
                file: "command line",
                key: "--route",
                "unknown target '\(text)' (expected unix:PATH, pty:LINK or serial:DEVICE[,baud=N,…])"
            )
        }
        let path = String(text.dropFirst(5))
        if let problem = problemWithSocketPath(path) {
            throw ConfigurationError(file: "command line", key: "--route", problem)
        }
        return .unix(path: path)
    }

    /// Parses a control socket address, `unix:PATH` (or just an absolute PATH), or `systemd:NAME`
    /// for a passed socket (kept as written); or says what is wrong.
    public static func parseControl(_ text: String) -> Result<String, ConfigurationError> {
        if text.hasPrefix("systemd:") {
            // A socket passed by the service manager under this FileDescriptorName=.
            guard case .success = ListenAddress.parse(text) else {
                return .failure(
                    ConfigurationError(file: "command line", key: "--control", "'systemd:' needs a socket name")
                )
            }
            return .success(text)
        }
        let path = text.hasPrefix("unix:") ? String(text.dropFirst(5)) : text
        if let problem = problemWithSocketPath(path) {
            return .failure(ConfigurationError(file: "command line", key: "--control", problem))
        }
        return .success(path)
    }

    /// What is wrong with a `unix:` target path, if anything: it must be absolute and fit in
    /// `sockaddr_un`.
    static func problemWithSocketPath(_ path: String) -> String? {
        if !path.hasPrefix("/") { return "'\(path)' must be an absolute path" }
        if path.utf8.count >= 108 { return "socket path is longer than 107 bytes" }
        return nil
    }
}
