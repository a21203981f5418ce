/// Why authentication refused a stream or a connection: the `reason` label of
/// `jmp_bridge_auth_failures_total`, a fixed set (never text a client sent).
public enum AuthFailureReason: String, Sendable, CaseIterable {
    /// No `authorization` metadata.
    case missing
    /// `authorization` is not `Bearer <token>`.
    case notBearer = "not_bearer"
    /// More than one `authorization` value (the router refuses those too).
    case repeated
    /// `authorization` is longer than any router token.
    case tooLong = "too_long"
    /// The token is not a well-formed JWT.
    case malformed
    /// The token's algorithm is not HS256, HS384 or HS512.
    case algorithm
    /// The configured key is too short for the token's algorithm.
    case keyTooShort = "key_too_short"
    /// The signature does not verify with the configured key.
    case signature
    /// The token has no `exp`.
    case noExpiry = "no_expiry"
    /// The token has expired.
    case expired
    /// The token's `nbf` is in the future.
    case notYetValid = "not_yet_valid"
    /// The token's `iat` is in the future.
    case issuedInFuture = "issued_in_future"
    /// The issuer is not the configured one.
    case issuer
    /// The audience does not include the configured one.
    case audience
    /// The token is bound to another route.
    case routeBinding = "route_binding"
    /// A Unix-socket peer not in the listener's allow-list.
    case peer
}
