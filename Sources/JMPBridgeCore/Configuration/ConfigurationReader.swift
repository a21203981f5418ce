import Foundation
import JMPProtocol
import NIOCore
import Yams

/// Walks the YAML node tree with the file name at hand for errors.
struct ConfigurationReader {
    let file: String

    func error(_ node: Node, key: String?, _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, line: node.mark?.line, key: key, message)
    }

    func mapping(_ node: Node, key: String?, allowed: [String]) throws(ConfigurationError) -> [(String, Node)] {
        guard case .mapping(let mapping) = node else {
            throw error(node, key: key, "expected a mapping of keys to values")
        }
        var result: [(String, Node)] = []
        var seen: Set<String> = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                throw error(keyNode, key: key, "keys must be plain strings")
            }
            let name = scalar.string
            let path = key.map { "\($0).\(name)" } ?? name
            guard allowed.contains(name) else {
                throw error(keyNode, key: path, "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
            }
            guard seen.insert(name).inserted else {
                throw error(keyNode, key: path, "key appears more than once")
            }
            result.append((name, value))
        }
        return result
    }

    func string(_ node: Node, key: String) throws(ConfigurationError) -> String {
        guard case .scalar(let scalar) = node, !scalar.string.isEmpty else {
            throw error(node, key: key, "expected a non-empty string")
        }
        return scalar.string
    }

    func bool(_ node: Node, key: String) throws(ConfigurationError) -> Bool {
        guard let value = node.bool else { throw error(node, key: key, "expected true or false") }
        return value
    }

    func size(_ node: Node, key: String, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        let text = try string(node, key: key)
        guard let value = Units.parseSize(text) else {
            throw error(node, key: key, "'\(text)' is not a size (e.g. 65536, 64KiB, 4MiB)")
        }
        guard range.contains(value) else {
            throw error(node, key: key, "\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func integer(_ node: Node, key: String, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        let text = try string(node, key: key)
        guard let value = Int(text) else { throw error(node, key: key, "'\(text)' is not a whole number") }
        guard range.contains(value) else {
            throw error(node, key: key, "\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// A duration of at least a second; `rule` is the error's text otherwise.
    func secondOrMore(_ value: Node, key: String, _ rule: String) throws(ConfigurationError) -> TimeAmount {
        let amount = try duration(value, key: key)
        guard amount >= .seconds(1) else { throw error(value, key: key, rule) }
        return amount
    }

    /// A duration of at least a second, or `off` (nil); `rule` is the error's text otherwise.
    func secondOrMoreOrOff(_ value: Node, key: String, _ rule: String) throws(ConfigurationError) -> TimeAmount? {
        guard value.string != "off" else { return nil }
        return try self.secondOrMore(value, key: key, rule)
    }

    func duration(_ node: Node, key: String) throws(ConfigurationError) -> TimeAmount {
        let text = try string(node, key: key)
        guard let value = Units.parseDuration(text) else {
            throw error(node, key: key, "'\(text)' is not a duration (e.g. 500ms, 5s, 2m)")
        }
        return value
    }

    func listeners(_ node: Node) throws(ConfigurationError) -> [ListenerConfiguration] {
        guard case .sequence(let sequence) = node else {
            throw error(node, key: "listen", "expected a list of listeners")
        }
        var result: [ListenerConfiguration] = []
        for (index, item) in sequence.enumerated() {
            let key = "listen[\(index)]"
            let listener = try self.listener(item, key: key)
            if listener.address.isExclusive, result.contains(where: { $0.address == listener.address }) {
                throw error(item, key: key, "\(listener.address) is listed twice")
            }
            result.append(listener)
        }
        return result
    }

    /// One listener: `tcp:…`, `unix:…` or `systemd:…` alone, or a mapping with `address` and
    /// the listener keys; `key` names it in errors (`listen[0]`, `gateway.listen`).
    func listener(_ item: Node, key: String) throws(ConfigurationError) -> ListenerConfiguration {
        let fields: [(String, Node)]
        if case .scalar = item {
            // The short form: `- tcp:0.0.0.0:8083` or `- unix:/run/x.sock`.
            fields = [("address", item)]
        } else {
            fields = try mapping(item, key: key, allowed: ConfigurationLoader.listenerKeys)
        }
        guard let addressNode = fields.first(where: { $0.0 == "address" })?.1 else {
            throw error(item, key: key, "missing 'address'")
        }
        let addressText = try string(addressNode, key: "\(key).address")
        let address: ListenAddress
        switch ListenAddress.parse(addressText) {
        case .success(let parsed): address = parsed
        case .failure(let problem): throw error(addressNode, key: "\(key).address", problem.description)
        }
        var listener = ListenerConfiguration(address: address, line: item.mark?.line)
        for (name, value) in fields {
            switch name {
            case "tls":
                let tls = try mapping(value, key: "\(key).tls", allowed: ConfigurationLoader.tlsKeys)
                guard let cert = tls.first(where: { $0.0 == "cert" })?.1 else {
                    throw error(value, key: "\(key).tls", "missing 'cert'")
                }
                guard let keyFile = tls.first(where: { $0.0 == "key" })?.1 else {
                    throw error(value, key: "\(key).tls", "missing 'key'")
                }
                listener.tls = TLSFiles(
                    certificate: try string(cert, key: "\(key).tls.cert"),
                    key: try string(keyFile, key: "\(key).tls.key")
                )
                if let clientCA = tls.first(where: { $0.0 == "client-ca" })?.1 {
                    listener.tls?.clientCA = try string(clientCA, key: "\(key).tls.client-ca")
                }
                if case .unix = address {
                    throw error(value, key: "\(key).tls", "TLS applies to tcp: and systemd: listeners only")
                }
            case "insecure":
                listener.insecure = try bool(value, key: "\(key).insecure")
            case "mode":
                let mode = try fileMode(value, key: "\(key).mode")
                guard case .unix = address else {
                    throw error(
                        value,
                        key: "\(key).mode",
                        "mode applies to unix: listeners only (for systemd: sockets, set SocketMode= in the unit)"
                    )
                }
                listener.mode = mode
            case "group", "auth", "allow-unauthenticated", "peer":
                try self.listenerSecurity(name, value, key: key, into: &listener)
            case "max-connections":
                listener.maxConnections = try integer(value, key: "\(key).max-connections", range: 1...65536)
            default:
                break
            }
        }
        if case .tcp = address, listener.tls == nil, !listener.insecure {
            throw error(
                item,
                key: key,
                "\(address) needs 'tls: {cert, key}' or, for plain TCP, 'insecure: true'"
            )
        }
        if listener.tls != nil && listener.insecure {
            throw error(item, key: key, "'tls' and 'insecure: true' contradict each other")
        }
        return listener
    }

    func routes(_ node: Node) throws(ConfigurationError) -> [String: RouteConfiguration] {
        guard case .mapping(let entries) = node else {
            throw error(node, key: "routes", "expected a mapping of route names to targets")
        }
        var result: [String: RouteConfiguration] = [:]
        for (nameNode, value) in entries {
            let name = try string(nameNode, key: "routes")
            guard RouterService.isValidRouteName(name) else {
                throw error(nameNode, key: "routes.\(name)", "not a valid route name ([A-Za-z0-9._-]{1,64})")
            }
            guard result[name] == nil else {
                throw error(nameNode, key: "routes.\(name)", "route defined more than once")
            }
            var fields = try mapping(value, key: "routes.\(name)", allowed: ConfigurationLoader.routeKeys)
            var door: (LocalDoorConfiguration, Node)?
            if let index = fields.firstIndex(where: { $0.0 == "local" }) {
                door = (try self.door(fields[index].1, key: "routes.\(name).local"), fields[index].1)
                fields.remove(at: index)
            }
            var connectTimeout: (TimeAmount, Node)?
            if let index = fields.firstIndex(where: { $0.0 == "connect-timeout" }) {
                let node = fields[index].1
                connectTimeout = (try self.connectTimeout(node, key: "routes.\(name).connect-timeout"), node)
                fields.remove(at: index)
            }
            guard let (kind, targetNode) = fields.first else {
                throw error(
                    value,
                    key: "routes.\(name)",
                    "missing target (expected 'unix: PATH', 'pty: {link: PATH}' or 'serial: {device: PATH}')"
                )
            }
            guard fields.count == 1 else {
                throw error(value, key: "routes.\(name)", "a route has exactly one target")
            }
            switch kind {
            case "unix":
                let path = try string(targetNode, key: "routes.\(name).unix")
                if let problem = RouteTarget.problemWithSocketPath(path) {
                    throw error(targetNode, key: "routes.\(name).unix", problem)
                }
                result[name] = RouteConfiguration(name: name, target: .unix(path: path))
            case "pty":
                let pty = try pty(targetNode, key: "routes.\(name).pty")
                if let problem = Self.pathInUse(pty.link, by: result) {
                    throw error(targetNode, key: "routes.\(name).pty.link", problem)
                }
                result[name] = RouteConfiguration(name: name, target: .pty(pty))
            case "serial":
                let serial = try serial(targetNode, key: "routes.\(name).serial")
                for (other, route) in result {
                    if case .serial(let used) = route.target, used.device == serial.device {
                        throw error(
                            targetNode,
                            key: "routes.\(name).serial.device",
                            "\(serial.device) is already the device of route '\(other)'"
                        )
                    }
                }
                for (other, route) in result.sorted(by: { $0.key < $1.key }) {
                    let otherLink: String?
                    switch route.target {
                    case .pty(let pty): otherLink = pty.link
                    case .serial(let used): otherLink = used.link?.path
                    case .unix: otherLink = nil
                    }
                    if otherLink == serial.device {
                        throw error(
                            targetNode,
                            key: "routes.\(name).serial.device",
                            "\(serial.device) is the link of route '\(other)'"
                        )
                    }
                }
                if let link = serial.link, let problem = Self.pathInUse(link.path, by: result) {
                    throw error(targetNode, key: "routes.\(name).serial.link", problem)
                }
                result[name] = RouteConfiguration(name: name, target: .serial(serial))
            default:
                break
            }
            if let (local, node) = door {
                guard case .unix = result[name]?.target else {
                    throw error(node, key: "routes.\(name).local", "local doors are available on unix: routes only")
                }
                result[name]?.local = local
            }
            if let (timeout, node) = connectTimeout {
                guard case .unix = result[name]?.target else {
                    throw error(
                        node,
                        key: "routes.\(name).connect-timeout",
                        "connect-timeout applies to unix: routes only"
                    )
                }
                result[name]?.connectTimeout = timeout
            }
            result[name]?.line = nameNode.mark?.line
        }
        return result
    }

    /// A route's `connect-timeout`: more than 0, at most 10 minutes.
    func connectTimeout(_ node: Node, key: String) throws(ConfigurationError) -> TimeAmount {
        let timeout = try duration(node, key: key)
        guard timeout > .zero, timeout <= .minutes(10) else {
            throw error(node, key: key, "must be more than 0 and at most 10m")
        }
        return timeout
    }

    /// A route's `local:` door: `unix:PATH` or `systemd:NAME`, or a mapping with `address`,
    /// `mode`, `splice` and `max-connections`.
    func door(_ node: Node, key: String) throws(ConfigurationError) -> LocalDoorConfiguration {
        let fields: [(String, Node)]
        if case .scalar = node {
            fields = [("address", node)]
        } else {
            fields = try mapping(node, key: key, allowed: ConfigurationLoader.doorKeys)
        }
        guard let addressNode = fields.first(where: { $0.0 == "address" })?.1 else {
            throw error(node, key: key, "missing 'address' (unix:PATH or systemd:NAME)")
        }
        let text = try string(addressNode, key: "\(key).address")
        let address: ListenAddress
        switch ListenAddress.parse(text) {
        case .success(.tcp): throw error(addressNode, key: "\(key).address", "a door is unix:PATH or systemd:NAME")
        case .success(let parsed): address = parsed
        case .failure(let problem): throw error(addressNode, key: "\(key).address", problem.description)
        }
        var door = LocalDoorConfiguration(address: address)
        for (name, value) in fields {
            switch name {
            case "mode":
                guard case .unix = address else {
                    throw error(value, key: "\(key).mode", "mode applies to unix: doors only")
                }
                door.mode = try fileMode(value, key: "\(key).mode")
            case "splice":
                door.splice = try bool(value, key: "\(key).splice")
            case "max-connections":
                door.maxConnections = try integer(value, key: "\(key).max-connections", range: 1...65536)
            default:
                break
            }
        }
        return door
    }

    /// An octal file mode such as "0660".
    func fileMode(_ node: Node, key: String) throws(ConfigurationError) -> UInt32 {
        let text = try string(node, key: key)
        guard let mode = UInt32(text, radix: 8), mode <= 0o777 else {
            throw error(node, key: key, "'\(text)' is not an octal file mode such as \"0660\"")
        }
        return mode
    }

    func pty(_ node: Node, key: String) throws(ConfigurationError) -> PtyConfiguration {
        let fields = try mapping(node, key: key, allowed: ConfigurationLoader.ptyKeys)
        guard let linkNode = fields.first(where: { $0.0 == "link" })?.1 else {
            throw error(node, key: key, "missing 'link' (the path exporter processes open)")
        }
        let link = try string(linkNode, key: "\(key).link")
        guard link.hasPrefix("/") else {
            throw error(linkNode, key: "\(key).link", "'\(link)' must be an absolute path")
        }
        var pty = PtyConfiguration(link: link)
        for (name, value) in fields {
            switch name {
            case "mode":
                pty.mode = try fileMode(value, key: "\(key).mode")
            case "group":
                pty.group = try groupName(value, key: "\(key).group")
            case "scrollback":
                pty.scrollback = try size(value, key: "\(key).scrollback", range: 0...(64 << 20))
            case "lag-limit":
                pty.lagLimit = try size(value, key: "\(key).lag-limit", range: 4096...(256 << 20))
            case "max-attachments":
                pty.maxAttachments = try integer(value, key: "\(key).max-attachments", range: 1...100_000)
            default:
                break
            }
        }
        return pty
    }

    func serial(_ node: Node, key: String) throws(ConfigurationError) -> SerialConfiguration {
        let fields = try mapping(node, key: key, allowed: SerialConfiguration.keys)
        guard let deviceNode = fields.first(where: { $0.0 == "device" })?.1 else {
            throw error(node, key: key, "missing 'device' (e.g. /dev/ttyUSB0)")
        }
        let device = try string(deviceNode, key: "\(key).device")
        guard device.hasPrefix("/") else {
            throw error(deviceNode, key: "\(key).device", "'\(device)' must be an absolute path")
        }
        var serial = SerialConfiguration(device: device)
        for (name, value) in fields where name == "link" {
            let link = try serialLink(value, key: "\(key).link")
            guard link.path != device else {
                throw error(value, key: "\(key).link", "the link cannot be the device itself")
            }
            serial.link = link
        }
        for (name, value) in fields where name != "device" && name != "link" {
            let text: String
            if name == "hupcl" {
                text = try bool(value, key: "\(key).\(name)") ? "true" : "false"
            } else {
                text = try string(value, key: "\(key).\(name)")
            }
            if let problem = serial.set(name, to: text) {
                throw error(value, key: "\(key).\(name)", problem)
            }
        }
        return serial
    }

    /// A `serial:` route's `link:`: a path, or a mapping with `path`, `mode` and `group`.
    func serialLink(_ node: Node, key: String) throws(ConfigurationError) -> SerialLinkConfiguration {
        let fields: [(String, Node)]
        if case .scalar = node {
            fields = [("path", node)]
        } else {
            fields = try mapping(node, key: key, allowed: SerialLinkConfiguration.linkKeys)
        }
        guard let pathNode = fields.first(where: { $0.0 == "path" })?.1 else {
            throw error(node, key: key, "missing 'path' (the path programs open instead of the device)")
        }
        var pathKey = "\(key).path"
        if case .scalar = node { pathKey = key }
        let path = try string(pathNode, key: pathKey)
        guard path.hasPrefix("/") else {
            throw error(pathNode, key: pathKey, "'\(path)' must be an absolute path")
        }
        var link = SerialLinkConfiguration(path: path)
        for (name, value) in fields {
            switch name {
            case "mode":
                link.mode = try fileMode(value, key: "\(key).mode")
            case "group":
                link.group = try groupName(value, key: "\(key).group")
            default:
                break
            }
        }
        return link
    }

    /// What is wrong with using `path` as one more route's link, if anything: no two routes may
    /// share a link, and a link may not be a serial route's device.
    static func pathInUse(_ path: String, by routes: [String: RouteConfiguration]) -> String? {
        for (other, route) in routes.sorted(by: { $0.key < $1.key }) {
            switch route.target {
            case .pty(let pty) where pty.link == path:
                return "\(path) is already the link of route '\(other)'"
            case .serial(let serial) where serial.link?.path == path:
                return "\(path) is already the link of route '\(other)'"
            case .serial(let serial) where serial.device == path:
                return "\(path) is the device of route '\(other)'"
            default:
                continue
            }
        }
        return nil
    }

    func limits(_ node: Node) throws(ConfigurationError) -> Limits {
        var limits = Limits()
        var keepaliveInterval: TimeAmount? = Keepalive.default.interval
        var keepaliveTimeout = Keepalive.default.timeout
        for (name, value) in try mapping(node, key: "limits", allowed: ConfigurationLoader.limitKeys) {
            let key = "limits.\(name)"
            switch name {
            case "max-message-size":
                limits.maxMessageSize = try size(value, key: key, range: 1024...(64 << 20))
            case "max-payload-size":
                limits.maxPayloadSize = try size(value, key: key, range: 1024...(4 << 20))
            case "stream-window":
                limits.streamWindow = try size(value, key: key, range: 65535...(8 << 20))
            case "max-streams-per-connection":
                limits.maxStreamsPerConnection = try integer(value, key: key, range: 1...100_000)
            case "max-streams":
                limits.maxStreams = try integer(value, key: key, range: 1...1_000_000)
            case "idle-timeout":
                let timeout = try duration(value, key: key)
                limits.idleTimeout = timeout > .zero ? timeout : nil
            case "keepalive":
                keepaliveInterval = try self.secondOrMoreOrOff(value, key: key, "must be at least 1s, or off")
            case "keepalive-timeout":
                keepaliveTimeout = try self.secondOrMore(value, key: key, "must be at least 1s")
            default:
                break
            }
        }
        limits.keepalive = keepaliveInterval.map { Keepalive(interval: $0, timeout: keepaliveTimeout) }
        return limits
    }
}
