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
