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
    /// How long an unused router connection is kept; nil: for good.
    public var idleTimeout: TimeAmount? = .minutes(30)
    /// Line of the section, for messages.
    public var line: Int?
    /// Line of `controller:`, for messages about its CA file.
    public var controllerLine: Int?
    /// Line of `router:`, for messages about its CA file.
    public var routerLine: Int?

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
            connectTimeout: self.connectTimeout,
            idleTimeout: self.idleTimeout
        )
    }
}
