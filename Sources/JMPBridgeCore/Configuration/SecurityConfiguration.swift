import NIOCore

/// The `jwt:` section: how bearer tokens are verified, as Jumpstarter's router does it.
///
/// Tokens are HS256, HS384 or HS512 JWTs signed with the shared secret in `keyFile` (the router's
/// `ROUTER_KEY`); `iss` and `aud` must match, `exp` is required, `nbf` and `iat` are honoured,
/// each with `leeway` for clocks that disagree a little.
public struct JWTConfiguration: Sendable, Equatable {
    /// The issuer Jumpstarter's controller writes into router tokens.
    public static let defaultIssuer = "https://jumpstarter.dev/stream"
    /// The audience Jumpstarter's controller writes into router tokens.
    public static let defaultAudience = "https://jumpstarter.dev/router"

    /// The file holding the shared secret: its bytes as written, one trailing newline ignored.
    public var keyFile: String
    /// The required `iss` claim.
    public var issuer: String
    /// The audience that `aud` must contain.
    public var audience: String
    /// How far `exp`, `nbf` and `iat` may be off.
    public var leeway: TimeAmount
    /// Line of the section in the configuration file, for messages.
    public var line: Int?

    /// Creates a JWT configuration with the router's defaults.
    public init(
        keyFile: String,
        issuer: String = JWTConfiguration.defaultIssuer,
        audience: String = JWTConfiguration.defaultAudience,
        leeway: TimeAmount = .seconds(30),
        line: Int? = nil
    ) {
        self.keyFile = keyFile
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.line = line
    }
}

/// How a listener authenticates the streams it accepts.
public enum ListenerAuth: String, Sendable, Equatable, CaseIterable {
    /// A valid JWT bearer token is required on every stream (see ``JWTConfiguration``).
    case jwt
    /// No authentication: whoever reaches the listener may use every route.
    case none
}

/// The peers a `unix:` listener accepts, by the credentials the kernel reports for the
/// connecting process (`SO_PEERCRED`): a peer whose uid is listed, or whose gid is listed, is
/// admitted; any other connection is closed before HTTP/2 starts.
public struct PeerAllowlist: Sendable, Equatable {
    /// User ids admitted.
    public var uids: [UInt32]
    /// Group ids admitted (the peer's effective group, as `SO_PEERCRED` reports it).
    public var gids: [UInt32]

    /// Creates an allowlist.
    public init(uids: [UInt32] = [], gids: [UInt32] = []) {
        self.uids = uids
        self.gids = gids
    }

    /// Whether a peer with these credentials may connect.
    public func admits(uid: UInt32, gid: UInt32) -> Bool {
        self.uids.contains(uid) || self.gids.contains(gid)
    }
}

extension ListenerConfiguration {
    /// The authentication this listener applies: what it says, else `jwt` when a `jwt:` section
    /// exists, else `none`.
    public func effectiveAuth(jwtConfigured: Bool) -> ListenerAuth {
        self.auth ?? (jwtConfigured ? .jwt : .none)
    }
}

extension BridgeConfiguration {
    /// Checks the security settings of the merged configuration: `auth: jwt` needs a `jwt:`
    /// section, and a `tcp:` listener without authentication must say
    /// `allow-unauthenticated: true`.
    public func validateSecurity() throws(ConfigurationError) {
        let origin = self.source ?? "command line"
        for listener in self.listeners {
            let auth = listener.effectiveAuth(jwtConfigured: self.jwt != nil)
            if auth == .jwt, self.jwt == nil {
                throw ConfigurationError(
                    file: origin,
                    line: listener.line,
                    key: "listen",
                    "\(listener.address) has 'auth: jwt' but there is no 'jwt:' section (key-file)"
                )
            }
            if case .tcp = listener.address, auth == .none, !listener.allowUnauthenticated {
                throw ConfigurationError(
                    file: origin,
                    line: listener.line,
                    key: "listen",
                    "\(listener.address) would accept streams without authentication: configure 'jwt:' "
                        + "or say 'allow-unauthenticated: true' (--allow-unauthenticated)"
                )
            }
        }
    }
}
