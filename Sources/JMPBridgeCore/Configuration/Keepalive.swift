import NIOCore

/// How the bridge finds clients that have gone without a word (`limits.keepalive`,
/// `limits.keepalive-timeout`; see ``ConnectionKeepaliveHandler``).
public struct Keepalive: Sendable, Equatable {
    /// A connection from which nothing has arrived for this long gets a PING.
    public var interval: TimeAmount
    /// If nothing arrives within this long after the PING, the connection is closed.
    public var timeout: TimeAmount

    /// The default: a PING after 2 minutes of silence, 20 s to answer it.
    public static let `default` = Keepalive(interval: .minutes(2), timeout: .seconds(20))

    /// Keepalive with `interval` and `timeout`.
    public init(interval: TimeAmount, timeout: TimeAmount) {
        self.interval = interval
        self.timeout = timeout
    }
}
