import JMPTargets
import NIOCore
import Yams

#if canImport(Glibc)
    import Glibc
#endif

extension ConfigurationLoader {
    /// The keys of `jwt:`.
    public static let jwtKeys = ["key-file", "issuer", "audience", "leeway"]
    /// The keys of `listen[].peer`.
    public static let peerKeys = ["uids", "gids"]
}

/// The security keys: `jwt:`, and `auth`, `allow-unauthenticated`, `group` and `peer` of a listener.
extension ConfigurationReader {
    func jwt(_ node: Node) throws(ConfigurationError) -> JWTConfiguration {
        let fields = try mapping(node, key: "jwt", allowed: ConfigurationLoader.jwtKeys)
        guard let keyFileNode = fields.first(where: { $0.0 == "key-file" })?.1 else {
            throw error(node, key: "jwt", "missing 'key-file' (the file holding the router's shared secret)")
        }
        let keyFile = try string(keyFileNode, key: "jwt.key-file")
        guard keyFile.hasPrefix("/") else {
            throw error(keyFileNode, key: "jwt.key-file", "'\(keyFile)' must be an absolute path")
        }
        var jwt = JWTConfiguration(keyFile: keyFile, line: node.mark?.line)
        for (name, value) in fields {
            switch name {
            case "issuer":
                jwt.issuer = try string(value, key: "jwt.issuer")
            case "audience":
                jwt.audience = try string(value, key: "jwt.audience")
            case "leeway":
                let leeway = try duration(value, key: "jwt.leeway")
                guard leeway <= .minutes(10) else {
                    throw error(value, key: "jwt.leeway", "at most 10m: a longer leeway keeps expired tokens alive")
                }
                jwt.leeway = leeway
            default:
                break
            }
        }
        return jwt
    }

    /// One of a listener's security keys (`key` is the listener's path, e.g. `listen[0]`).
    func listenerSecurity(
        _ name: String,
        _ value: Node,
        key: String,
        into listener: inout ListenerConfiguration
    ) throws(ConfigurationError) {
        let path = "\(key).\(name)"
        switch name {
        case "auth":
            let text = try string(value, key: path)
            guard let auth = ListenerAuth(rawValue: text) else {
                throw error(value, key: path, "'\(text)' is not jwt or none")
            }
            listener.auth = auth
        case "allow-unauthenticated":
            listener.allowUnauthenticated = try bool(value, key: path)
        case "group":
            guard case .unix = listener.address else {
                throw error(value, key: path, "group applies to unix: listeners only")
            }
            listener.group = try groupName(value, key: path)
        case "peer":
            guard case .unix = listener.address else {
                throw error(value, key: path, "peer credentials apply to unix: listeners only")
            }
            var allowlist = PeerAllowlist()
            for (field, list) in try mapping(value, key: path, allowed: ConfigurationLoader.peerKeys) {
                let ids = try self.ids(list, key: "\(path).\(field)", users: field == "uids")
                if field == "uids" { allowlist.uids = ids } else { allowlist.gids = ids }
            }
            guard !allowlist.uids.isEmpty || !allowlist.gids.isEmpty else {
                throw error(value, key: path, "needs 'uids' or 'gids' (an empty allowlist admits nobody)")
            }
            listener.peer = allowlist
        default:
            break
        }
    }

    /// A list of numeric ids or user (group) names, resolved now.
    private func ids(_ node: Node, key: String, users: Bool) throws(ConfigurationError) -> [UInt32] {
        guard case .sequence(let items) = node else {
            throw error(node, key: key, "expected a list of \(users ? "user" : "group") names or numeric ids")
        }
        var result: [UInt32] = []
        for item in items {
            let text = try string(item, key: key)
            if let id = users ? SystemAccounts.userID(text) : SystemAccounts.groupID(text) {
                result.append(id)
            } else {
                throw error(item, key: key, "unknown \(users ? "user" : "group") '\(text)'")
            }
        }
        return result
    }

    /// A `group:` value: a group name or numeric id that the system knows now.
    func groupName(_ node: Node, key: String) throws(ConfigurationError) -> String {
        let text = try string(node, key: key)
        guard SystemAccounts.groupID(text) != nil else { throw error(node, key: key, "unknown group '\(text)'") }
        return text
    }
}
