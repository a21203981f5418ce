import JMPMetrics
import JMPProtocol

/// Why ``TokenVerifier`` refused a token: the status the stream ends with (UNAUTHENTICATED, with
/// a message for the client and the log) and the reason's fixed name for the metrics.
public struct TokenRefusal: Error, Sendable {
    /// The reason, as `jmp_bridge_auth_failures_total` labels it.
    public var reason: AuthFailureReason
    /// The status the stream is refused with.
    public var status: GRPCStatus
}
