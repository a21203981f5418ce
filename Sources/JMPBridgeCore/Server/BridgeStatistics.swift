import Synchronization

/// Counters shared by every stream of a bridge, for status reports and logs.
public final class BridgeStatistics: Sendable {
    /// Client connections currently open.
    public let activeConnections = Atomic<Int>(0)
    /// Streams currently open.
    public let activeStreams = Atomic<Int>(0)
    /// Streams accepted since start.
    public let totalStreams = Atomic<Int>(0)
    /// Streams that ended with a status other than OK or CANCELLED (a client that cancels has not
    /// seen a failure of the bridge).
    public let failedStreams = Atomic<Int>(0)
    /// Payload bytes delivered from clients to targets.
    public let bytesToTargets = Atomic<Int>(0)
    /// Payload bytes delivered from targets to clients.
    public let bytesFromTargets = Atomic<Int>(0)

    /// Creates zeroed counters.
    public init() {}
}
