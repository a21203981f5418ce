/// An upstream server could not be reached: the call that needed it ends with UNAVAILABLE, as it
/// would for a gRPC client that could not connect.
struct UpstreamUnavailable: Error, Sendable, CustomStringConvertible {
    /// The server.
    var endpoint: UpstreamEndpoint
    /// Why (the system's reason, or "retrying in Ns" during the backoff after a failure).
    var reason: String

    var description: String { "\(self.endpoint) unreachable: \(self.reason)" }
}
