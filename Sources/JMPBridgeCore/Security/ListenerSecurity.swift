import JMPMetrics
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// What a listener demands of its connections and streams.
struct ListenerSecurity: Sendable {
    /// The listener, for log lines.
    var listener: String
    /// Verifies each stream's bearer token; nil: `auth: none`.
    var verifier: TokenVerifier?
    /// The peers a `unix:` listener admits; nil: any.
    var peer: PeerAllowlist?
    /// The listener's connection and authentication metrics; nil: no metrics endpoint.
    var metrics: ListenerMetrics? = nil
    /// The listener's connections, counted against its `max-connections` (one count for all its
    /// sockets).
    var connections = ConnectionCap(limit: ListenerConfiguration.defaultMaxConnections)
}
