import Foundation
import JMPProtocol
import NIOCore
import Yams

/// Reads the YAML configuration file (default `/etc/jmp-bridge/bridge.yaml`).
///
/// Every key is checked: an unknown key, a value of the wrong kind or an impossible combination is
/// a ``ConfigurationError`` naming the file, the line and the key, so a broken file never starts a
/// half-configured daemon.
public enum ConfigurationLoader {
    /// The default configuration file.
    public static let defaultPath = "/etc/jmp-bridge/bridge.yaml"

    /// The top-level keys, as documented in jmp-bridge.yaml(5).
    public static let topLevelKeys = [
        "listen", "control", "metrics", "default-route", "routes", "limits", "linger", "exit-idle-time", "jwt",
        "gateway",
    ]
    /// The keys of one `listen:` entry.
    public static let listenerKeys = [
        "address", "tls", "insecure", "mode", "group", "auth", "allow-unauthenticated", "peer", "max-connections",
    ]
    /// The keys of `listen[].tls`.
    public static let tlsKeys = ["cert", "key", "client-ca"]
    /// The keys of a route: its target (exactly one of `unix`, `pty`, `serial`) and, on `unix`
    /// routes, `local` and `connect-timeout`.
    public static let routeKeys = ["unix", "pty", "serial", "local", "connect-timeout"]
    /// The keys of a route's `local:` door.
    public static let doorKeys = ["address", "mode", "splice", "max-connections"]
    /// The keys of a `pty:` target.
    public static let ptyKeys = ["link", "mode", "group", "scrollback", "lag-limit", "max-attachments"]
    /// The keys of `limits:`.
    public static let limitKeys = [
        "max-message-size", "max-payload-size", "stream-window", "max-streams-per-connection", "max-streams",
        "idle-timeout", "keepalive", "keepalive-timeout",
    ]

    /// Loads and checks a configuration file.
    public static func load(path: String) throws(ConfigurationError) -> BridgeConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(file: path, "cannot read: \(Self.reason(error))")
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses configuration text; `file` names it in errors.
    public static func parse(yaml: String, file: String) throws(ConfigurationError) -> BridgeConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw Self.syntaxError(error, yaml: yaml, file: file)
        } catch {
            throw ConfigurationError(file: file, "not valid YAML: \(error)")
        }
        var configuration = BridgeConfiguration(source: file)
        // No document, or an empty one (`---` and nothing else): nothing configured.
        guard let root, root.null == nil else { return configuration }
        let reader = ConfigurationReader(file: file)
        let top = try reader.mapping(root, key: nil, allowed: topLevelKeys)
        for (key, value) in top {
            switch key {
            case "listen":
                configuration.listeners = try reader.listeners(value)
            case "default-route":
                let name = try reader.string(value, key: key)
                guard RouterService.isValidRouteName(name) else {
                    throw reader.error(value, key: key, "'\(name)' is not a valid route name ([A-Za-z0-9._-]{1,64})")
                }
                configuration.defaultRoute = name
            case "routes":
                configuration.routes = try reader.routes(value)
            case "limits":
                configuration.limits = try reader.limits(value)
            case "linger":
                configuration.linger = try reader.duration(value, key: key)
            case "exit-idle-time":
                configuration.exitIdleTime = try reader.duration(value, key: key)
            case "jwt":
                configuration.jwt = try reader.jwt(value)
            case "gateway":
                configuration.gateway = try reader.gateway(value)
            case "metrics":
                let text = try reader.string(value, key: key)
                switch ListenAddress.parse(text) {
                case .success(let address): configuration.metrics = address
                case .failure(let problem): throw reader.error(value, key: key, problem.description)
                }
            case "control":
                let text = try reader.string(value, key: key)
                switch RouteTarget.parseControl(text) {
                case .success(let path): configuration.control = path
                case .failure(let problem): throw reader.error(value, key: key, problem.message)
                }
            default:
                break
            }
        }
        if let name = configuration.defaultRoute, configuration.routes[name] == nil,
            let node = top.first(where: { $0.0 == "default-route" })?.1
        {
            throw reader.error(node, key: "default-route", "no route named '\(name)' under 'routes:'")
        }
        return configuration
    }

    static func syntaxError(_ error: YamlError, yaml: String, file: String) -> ConfigurationError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            return ConfigurationError(file: file, line: mark.line, "YAML syntax error: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return duplicateKeyError(yaml: yaml, file: file, key: duplicates.first, first: context.mark)
        default:
            return ConfigurationError(file: file, "YAML syntax error: \(error)")
        }
    }

    /// Yams refuses a repeated key while composing and names only the bare key and its *first*
    /// occurrence. Point at the repetition instead, with the key's full path like every other
    /// error: the shortest prefix of whole lines that Yams refuses for a repeated key ends on the
    /// line of the repetition, and the lines before it still hold the first occurrence.
    static func duplicateKeyError(yaml: String, file: String, key: String?, first: Mark) -> ConfigurationError {
        // Split at "\n" bytes: as Characters, "\r\n" is one grapheme that is not "\n".
        let lines = yaml.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        guard first.line >= 1, first.line <= lines.count else {
            // Lines not broken by "\n" (libyaml also counts a lone "\r"): keep what Yams said.
            return ConfigurationError(file: file, line: first.line, key: key, "key appears more than once")
        }
        var line = first.line
        var name = key
        var firstMark = first
        search: for end in first.line...lines.count {
            do {
                _ = try Yams.compose(yaml: lines[..<end].joined(separator: "\n"))
            } catch YamlError.duplicatedKeysInMapping(let duplicates, let context) {
                (line, name, firstMark) = (end, duplicates.first, context.mark)
                break search
            } catch {
                continue
            }
        }
        var path = name
        if let name, line > 1,
            let before = try? Yams.compose(yaml: lines[..<(line - 1)].joined(separator: "\n"))
        {
            path = keyPath(of: name, at: firstMark, in: before, path: nil) ?? name
        }
        return ConfigurationError(file: file, line: line, key: path, "key appears more than once")
    }

    /// The dotted path (`routes.session.unix`, `listen[1].address`) of the key `name` at `mark`.
    static func keyPath(of name: String, at mark: Mark, in node: Node, path: String?) -> String? {
        switch node {
        case .mapping(let mapping):
            for (keyNode, value) in mapping {
                let here = path.map { "\($0).\(keyNode.string ?? "")" } ?? (keyNode.string ?? "")
                if keyNode.string == name, keyNode.mark?.line == mark.line, keyNode.mark?.column == mark.column {
                    return here
                }
                if let found = keyPath(of: name, at: mark, in: value, path: here) { return found }
            }
        case .sequence(let sequence):
            for (index, item) in sequence.enumerated() {
                if let found = keyPath(of: name, at: mark, in: item, path: "\(path ?? "")[\(index)]") {
                    return found
                }
            }
        default:
            break
        }
        return nil
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? CocoaError, let underlying = error.userInfo[NSUnderlyingErrorKey] as? POSIXError {
            return String(cString: strerror(underlying.code.rawValue))
        }
        return (error as NSError).localizedDescription
    }
}
