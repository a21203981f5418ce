import JMPGateway

extension GatewayConfiguration {
    /// The address exporters reach a gateway bound at `bound`: its `host:port`, or
    /// `unix:PATH`; a wildcard or passed socket needs `advertise` configured.
    static func advertise(for bound: ListenAddress) throws(BridgeError) -> String {
        switch bound {
        case .tcp(let host, let port):
            guard host != "0.0.0.0", host != "::" else {
                throw BridgeError(
                    "gateway: listening on \(bound), set 'gateway.advertise' to the address exporters use"
                )
            }
            return UpstreamEndpoint(host: host, port: port).authority
        case .unix(let path):
            return "unix:\(path)"
        case .systemd:
            throw BridgeError("gateway: set 'gateway.advertise' for a systemd: listener")
        }
    }
}
