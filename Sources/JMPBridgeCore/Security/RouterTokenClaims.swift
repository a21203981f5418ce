import JWTKit

/// The claims of a Jumpstarter router token that the bridge reads.
///
/// Jumpstarter's controller mints `iss`, `sub` (the stream's id), `aud`, `exp`, `nbf`, `iat` and
/// `jti`; `route` is jmp-bridge's own optional claim that binds a token to one route (the
/// router ignores claims it does not know, so such a token stays valid there).
public struct RouterTokenClaims: JWTPayload, Equatable {
    /// `iss`.
    public var iss: IssuerClaim?
    /// `sub`: the stream's id, for logs.
    public var sub: SubjectClaim?
    /// `aud`: one string or a list.
    public var aud: AudienceClaim?
    /// `exp`, required.
    public var exp: ExpirationClaim?
    /// `nbf`, honoured when present.
    public var nbf: NotBeforeClaim?
    /// `iat`, checked when present: not in the future.
    public var iat: IssuedAtClaim?
    /// `route`: the only route this token may use.
    public var route: String?

    /// Creates claims (tests and tools mint tokens with it).
    public init(
        iss: IssuerClaim? = nil,
        sub: SubjectClaim? = nil,
        aud: AudienceClaim? = nil,
        exp: ExpirationClaim? = nil,
        nbf: NotBeforeClaim? = nil,
        iat: IssuedAtClaim? = nil,
        route: String? = nil
    ) {
        self.iss = iss
        self.sub = sub
        self.aud = aud
        self.exp = exp
        self.nbf = nbf
        self.iat = iat
        self.route = route
    }

    /// Nothing here: ``TokenVerifier`` checks the claims itself, with its leeway and without
    /// leaving the event loop.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}
