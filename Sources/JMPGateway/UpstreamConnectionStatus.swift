import NIOCore

/// What `status` shows of one pooled upstream connection (one per endpoint and event loop).
public struct UpstreamConnectionStatus: Sendable, Equatable {
    /// The connection's state.
    public enum State: String, Sendable {
        /// Being set up (TCP, TLS, HTTP/2 preface).
        case connecting
        /// Carrying calls.
        case ready
        /// The server sent GOAWAY: its calls finish, new ones go to a new connection.
        case draining
        /// Not connected; the next call connects.
        case idle
        /// The last attempt failed; calls fail at once until the backoff has passed.
        case failed
    }

    /// The server.
    public var endpoint: UpstreamEndpoint
    /// The state.
    public var state: State
    /// Calls open on it now.
    public var streams: Int
    /// Successful connections since start.
    public var connects: Int
    /// Failed connection attempts since start.
    public var failures: Int
    /// The last failure's reason, if any.
    public var lastError: String?
    /// The certificate the server presented at the last TLS handshake (nil: none yet, or h2c).
    public var certificate: PresentedCertificate?

    /// A server certificate's notAfter (seconds since the epoch) and when the gateway saw it.
    public struct PresentedCertificate: Sendable, Equatable {
        /// Its notAfter.
        public var notValidAfter: Int64
        /// The handshake it was presented at.
        public var seen: NIODeadline
    }
}
