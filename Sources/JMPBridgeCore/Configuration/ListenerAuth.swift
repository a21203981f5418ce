import NIOCore

/// How a listener authenticates the streams it accepts.
public enum ListenerAuth: String, Sendable, Equatable, CaseIterable {
    /// A valid JWT bearer token is required on every stream (see ``JWTConfiguration``).
    case jwt
    /// No authentication: whoever reaches the listener may use every route.
    case none
}
