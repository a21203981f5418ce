import JMPDoors
import NIOCore

/// Limits that keep one stream or client from taking more than its share.
public struct Limits: Sendable, Equatable {
    /// Largest gRPC message accepted from a client; a larger one fails that stream with
    /// RESOURCE_EXHAUSTED.
    public var maxMessageSize: Int = 4 * 1024 * 1024
    /// Largest payload the bridge puts into one outgoing message (peers accept 4 MiB by default).
    public var maxPayloadSize: Int = 64 * 1024
    /// HTTP/2 flow-control window per stream: how far a client may send ahead of the target.
    public var streamWindow: Int = 4 * 1024 * 1024
    /// Concurrent streams one HTTP/2 connection may open.
    public var maxStreamsPerConnection: Int = 1024
    /// Concurrent streams across all connections.
    public var maxStreams: Int = 4096
    /// A stream that moves no payload byte either way for this long is ended
    /// (DEADLINE_EXCEEDED); nil: never.
    public var idleTimeout: TimeAmount?
    /// How a client that has gone without a word is found and its connection closed; nil: never
    /// (`keepalive: off`).
    public var keepalive: Keepalive? = .default

    /// Creates the default limits.
    public init() {}
}
