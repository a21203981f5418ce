/// A socket the bridge serves gRPC on, as `jmp-bridge status` reports it: the address it is
/// actually bound to and the configured address it came from.
///
/// This is the stable way for programs to learn what the bridge bound (a `tcp:` port 0
/// resolved, the own address of a socket passed by systemd); see jmp-bridge(8), "Control socket".
public struct BoundListener: Sendable, Equatable {
    /// The bound address: `tcp:HOST:PORT` with the real port, or `unix:PATH`.
    public let address: ListenAddress
    /// The address in the configuration or on the command line (`tcp:HOST:0`, `systemd:NAME`, …).
    public let configured: ListenAddress
    /// The listener speaks TLS.
    public let tls: Bool
    /// How the listener authenticates streams.
    public let auth: ListenerAuth

    /// Creates a description of one bound socket.
    public init(address: ListenAddress, configured: ListenAddress, tls: Bool, auth: ListenerAuth) {
        self.address = address
        self.configured = configured
        self.tls = tls
        self.auth = auth
    }
}
