import JMPGateway
import NIOCore

/// The `gateway:` section: the exporter gateway's listener and its upstream servers.
public struct GatewayConfiguration: Sendable, Equatable {
    /// Where the local exporters connect (their YAML's `endpoint:`).
    public var listener: ListenerConfiguration
    /// The real controller.
    public var controller: UpstreamEndpoint
    /// How the controller's certificate is checked.
    public var controllerTrust: UpstreamTrust = .systemRoots
    /// How routers' certificates are checked; nil: as the controller's.
    public var routerTrust: UpstreamTrust?
    /// The router endpoint given to exporters; nil: the listener's own bound `host:port`.
    public var advertise: String?
    /// Keepalive PING interval on upstream connections; nil: off.
    public var keepalive: TimeAmount? = .seconds(30)
    /// Connect (and TLS handshake) timeout for upstream servers.
    public var connectTimeout: TimeAmount = .seconds(10)
    /// Line of the section, for messages.
    public var line: Int?

    /// Creates a gateway configuration.
    public init(listener: ListenerConfiguration, controller: UpstreamEndpoint, line: Int? = nil) {
        self.listener = listener
        self.controller = controller
        self.line = line
    }

    /// The gateway's settings; the advertised address is empty until the listener is bound
    /// when none is configured (see ``advertise(for:)``).
    func settings() -> GatewaySettings {
        GatewaySettings(
            controller: self.controller,
            controllerTrust: self.controllerTrust,
            routerTrust: self.routerTrust,
            advertise: self.advertise ?? "",
            keepalive: self.keepalive,
            connectTimeout: self.connectTimeout
        )
    }

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
