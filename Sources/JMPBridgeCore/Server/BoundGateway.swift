import JMPGateway

/// The running exporter gateway and the address its listener is bound to, for `status`.
public struct BoundGateway: Sendable {
    /// The gateway.
    public let gateway: Gateway
    /// Its listener's bound address.
    public let address: ListenAddress
    /// Its listener's configured address (`systemd:NAME`, `tcp:HOST:0`, …).
    public let configured: ListenAddress
}
