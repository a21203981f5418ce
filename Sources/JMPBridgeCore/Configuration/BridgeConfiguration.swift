import JMPDoors
import NIOCore

/// Everything `jmp-bridge serve` runs from: listeners, routes and limits, merged from the
/// configuration file and the command line.
public struct BridgeConfiguration: Sendable, Equatable {
    /// Where gRPC clients connect.
    public var listeners: [ListenerConfiguration]
    /// The routes by name.
    public var routes: [String: RouteConfiguration]
    /// The route used when a stream names none.
    public var defaultRoute: String?
    /// Resource limits and protocol tuning.
    public var limits: Limits
    /// How long to wait, once the target has reached EOF and GOAWAY was sent, for a client that
    /// never ends its side before the bridge ends the RPC with status OK.
    public var linger: TimeAmount
    /// The control socket's path (`control: unix:PATH`), or `systemd:NAME` for a socket passed by
    /// the service manager, serving `attach` and `status`; nil: none.
    public var control: String?
    /// Where the Prometheus metrics endpoint (`GET /metrics`) listens (`metrics: ADDRESS`);
    /// nil: no endpoint.
    public var metrics: ListenAddress?
    /// The configuration file this came from, if any (for messages).
    public var source: String?
    /// Exit (status 0) after this long without a single client connection; for socket-activated
    /// bridges, which systemd starts again on the next connection. Nil: never.
    public var exitIdleTime: TimeAmount?
    /// How bearer tokens are verified; nil: no `jwt:` section.
    public var jwt: JWTConfiguration?
    /// The exporter gateway; nil: no `gateway:` section.
    public var gateway: GatewayConfiguration?

    /// Creates a configuration.
    public init(
        listeners: [ListenerConfiguration] = [],
        routes: [String: RouteConfiguration] = [:],
        defaultRoute: String? = nil,
        limits: Limits = Limits(),
        linger: TimeAmount = .seconds(5),
        control: String? = nil,
        source: String? = nil
    ) {
        self.control = control
        self.listeners = listeners
        self.routes = routes
        self.defaultRoute = defaultRoute
        self.limits = limits
        self.linger = linger
        self.source = source
    }

    /// Applies the rule that a configuration with exactly one route and no `default-route` uses
    /// that route as the default, then validates. `serve` and `check` both go through this.
    public mutating func finalize() throws(ConfigurationError) {
        if self.defaultRoute == nil, self.routes.count == 1 {
            self.defaultRoute = self.routes.keys.first
        }
        try self.validate()
    }

    /// Checks what only the merged configuration can tell: that there is something to serve, that
    /// the default route exists, and that every plain TCP listener was asked for explicitly.
    /// Errors name the option or key at fault.
    public func validate() throws(ConfigurationError) {
        let origin = self.source ?? "command line"
        if self.listeners.isEmpty && self.gateway == nil {
            throw ConfigurationError(
                file: origin,
                key: "listen",
                "no listener configured (use --listen or 'listen:', or configure 'gateway:')"
            )
        }
        if let gateway = self.gateway, gateway.listener.address.isExclusive,
            self.listeners.contains(where: { $0.address == gateway.listener.address })
        {
            throw ConfigurationError(
                file: origin,
                line: gateway.line,
                key: "gateway.listen",
                "\(gateway.listener.address) is also under 'listen:'"
            )
        }
        if let name = self.defaultRoute, self.routes[name] == nil {
            throw ConfigurationError(file: origin, key: "default-route", "no route named '\(name)'")
        }
        var devices: [String: String] = [:]
        for route in self.routes.values.sorted(by: { $0.name < $1.name }) {
            guard case .serial(let serial) = route.target else { continue }
            if let other = devices.updateValue(route.name, forKey: serial.device) {
                throw ConfigurationError(
                    file: origin,
                    key: "routes.\(route.name).serial.device",
                    "\(serial.device) is already the device of route '\(other)'"
                )
            }
        }
        // Routes from the command line are merged after the file's were read: no link may be
        // another route's link or device.
        var links: [String: String] = [:]
        for route in self.routes.values.sorted(by: { $0.name < $1.name }) {
            let link: String
            let key: String
            switch route.target {
            case .pty(let pty): (link, key) = (pty.link, "routes.\(route.name).pty.link")
            case .serial(let serial):
                guard let path = serial.link?.path else { continue }
                (link, key) = (path, "routes.\(route.name).serial.link")
            case .unix: continue
            }
            if let other = links.updateValue(route.name, forKey: link) {
                throw ConfigurationError(file: origin, key: key, "\(link) is already the link of route '\(other)'")
            }
            if let other = devices[link] {
                throw ConfigurationError(file: origin, key: key, "\(link) is the device of route '\(other)'")
            }
        }
        var seen: Set<ListenAddress> = []
        for listener in self.listeners {
            if listener.address.isExclusive, !seen.insert(listener.address).inserted {
                throw ConfigurationError(
                    file: origin,
                    line: listener.line,
                    key: "listen",
                    "\(listener.address) is listed twice"
                )
            }
            if case .tcp = listener.address, listener.tls == nil, !listener.insecure {
                throw ConfigurationError(
                    file: origin,
                    line: listener.line,
                    key: "listen",
                    "\(listener.address) needs 'tls: {cert, key}' or, for plain TCP, 'insecure: true'"
                )
            }
        }
        try self.validateSecurity()
    }
}
