import NIOCore

/// What the exporter gateway needs besides its listener: the real controller, how to trust it
/// and the routers, and the address it gives exporters in place of the routers'.
public struct GatewaySettings: Sendable, Equatable {
    /// The real controller.
    public var controller: UpstreamEndpoint
    /// How the controller's certificate is checked.
    public var controllerTrust: UpstreamTrust
    /// How routers' certificates are checked; nil: as the controller's.
    public var routerTrust: UpstreamTrust?
    /// The `router_endpoint` given to exporters in every `ListenResponse`: the gateway's own
    /// address as the exporters reach it (`host:port`).
    public var advertise: String
    /// Interval of the HTTP/2 PINGs on idle upstream connections (a connection whose PING is
    /// not answered within the same time is closed); nil: no keepalive.
    public var keepalive: TimeAmount?
    /// How long connecting (and the TLS handshake) to an upstream server may take.
    public var connectTimeout: TimeAmount
    /// How long a router connection carrying no stream is kept: then it is closed and leaves
    /// `status` and the metrics (the controller's is kept); nil: kept for good.
    public var idleTimeout: TimeAmount?

    /// Creates settings.
    public init(
        controller: UpstreamEndpoint,
        controllerTrust: UpstreamTrust = .systemRoots,
        routerTrust: UpstreamTrust? = nil,
        advertise: String,
        keepalive: TimeAmount? = .seconds(30),
        connectTimeout: TimeAmount = .seconds(10),
        idleTimeout: TimeAmount? = .minutes(30)
    ) {
        self.controller = controller
        self.controllerTrust = controllerTrust
        self.routerTrust = routerTrust
        self.advertise = advertise
        self.keepalive = keepalive
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
    }

    /// The trust for routers in effect.
    public var effectiveRouterTrust: UpstreamTrust { self.routerTrust ?? self.controllerTrust }
}
