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
    /// The configuration file this came from, if any (for messages).
    public var source: String?
    /// Exit (status 0) after this long without a single client connection; for socket-activated
    /// bridges, which systemd starts again on the next connection. Nil: never.
    public var exitIdleTime: TimeAmount?
    /// How bearer tokens are verified; nil: no `jwt:` section.
    public var jwt: JWTConfiguration?

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
        if self.listeners.isEmpty {
            throw ConfigurationError(file: origin, key: "listen", "no listener configured (use --listen or 'listen:')")
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
        var seen: Set<ListenAddress> = []
        for listener in self.listeners {
            if !seen.insert(listener.address).inserted {
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

/// One gRPC listener.
public struct ListenerConfiguration: Sendable, Equatable {
    /// Where to listen.
    public var address: ListenAddress
    /// Certificate and key for TLS on a `tcp:` listener.
    public var tls: TLSFiles?
    /// Plain TCP without TLS was asked for explicitly.
    public var insecure: Bool
    /// File mode of a `unix:` socket, e.g. 0o660.
    public var mode: UInt32?
    /// Group of a `unix:` socket.
    public var group: String?
    /// Authentication of the streams; nil: `jwt` if a `jwt:` section exists, else `none`.
    public var auth: ListenerAuth?
    /// A `tcp:` listener may serve without authentication (said explicitly).
    public var allowUnauthenticated = false
    /// The peers a `unix:` listener admits (`SO_PEERCRED`); nil: any that can open the socket.
    public var peer: PeerAllowlist?
    /// Line in the configuration file, for messages.
    public var line: Int?

    /// Creates a listener configuration.
    public init(
        address: ListenAddress,
        tls: TLSFiles? = nil,
        insecure: Bool = false,
        mode: UInt32? = nil,
        line: Int? = nil
    ) {
        self.address = address
        self.tls = tls
        self.insecure = insecure
        self.mode = mode
        self.line = line
    }
}

/// PEM files for a TLS listener.
public struct TLSFiles: Sendable, Equatable {
    /// The certificate chain, leaf first.
    public var certificate: String
    /// The private key.
    public var key: String
    /// CA certificates (PEM) that client certificates must chain to; set: mutual TLS, every
    /// client must present a certificate.
    public var clientCA: String?

    /// Creates the pair.
    public init(certificate: String, key: String) {
        self.certificate = certificate
        self.key = key
    }
}

/// A named route and what it leads to.
public struct RouteConfiguration: Sendable, Equatable {
    /// The route's name, `[A-Za-z0-9._-]{1,64}`.
    public var name: String
    /// Where its streams go.
    public var target: RouteTarget
    /// A raw Unix-socket door to the same target, for local tools (no gRPC).
    public var local: LocalDoorConfiguration?
    /// `unix:` routes: how long a stream may wait for its connection to the target, retries of
    /// a busy target (listen backlog full) included, before it fails with UNAVAILABLE.
    public var connectTimeout: TimeAmount = RouteConfiguration.defaultConnectTimeout

    /// The `connect-timeout` of a route that sets none.
    public static let defaultConnectTimeout = TimeAmount.seconds(10)

    /// Creates a route.
    public init(name: String, target: RouteTarget, local: LocalDoorConfiguration? = nil) {
        self.name = name
        self.target = target
        self.local = local
    }
}

/// A route's local door: a listening socket whose connections are relayed byte for byte to the
/// route's target, with splice(2).
public struct LocalDoorConfiguration: Sendable, Equatable {
    /// `unix:PATH`, or `systemd:NAME` for a socket passed by the service manager.
    public var address: ListenAddress
    /// File mode of a `unix:` door's socket.
    public var mode: UInt32?
    /// Move bytes with splice(2); false forces read/write through a buffer.
    public var splice: Bool = true
    /// Connections relayed at once (each holds up to 1 MiB of pipe per direction); one more is
    /// closed at once and logged.
    public var maxConnections: Int = Door.defaultMaxConnections

    /// Creates a door configuration.
    public init(
        address: ListenAddress,
        mode: UInt32? = nil,
        splice: Bool = true,
        maxConnections: Int = Door.defaultMaxConnections
    ) {
        self.address = address
        self.mode = mode
        self.splice = splice
        self.maxConnections = maxConnections
    }
}

/// The local endpoint behind a route.
public enum RouteTarget: Sendable, Equatable, CustomStringConvertible {
    /// A Unix domain stream socket, connected afresh for every stream.
    case unix(path: String)
    /// A pty the bridge owns, shared by every stream attached to the route.
    case pty(PtyConfiguration)
    /// A serial device the bridge holds open, shared by every stream attached to the route.
    case serial(SerialConfiguration)

    /// The `max-attachments` of a console route; nil: no limit, or not a console.
    public var maxAttachments: Int? {
        switch self {
        case .pty(let pty): return pty.maxAttachments
        case .serial(let serial): return serial.maxAttachments
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .pty(let pty): return "pty:\(pty.link)"
        case .serial(let serial): return "serial:\(serial.device)"
        }
    }

    /// Whether streams on this target attach to a console (pty or serial) rather than connect.
    public var isConsole: Bool {
        if case .unix = self { return false }
        return true
    }

    /// Parses the command-line forms `unix:PATH`, `pty:LINK` and `serial:DEVICE[,KEY=VALUE]…`.
    public static func parse(_ text: String) throws(ConfigurationError) -> RouteTarget {
        if text.hasPrefix("serial:") {
            return .serial(try SerialConfiguration.parse(commandLine: String(text.dropFirst(7))))
        }
        if text.hasPrefix("pty:") {
            let link = String(text.dropFirst(4))
            guard link.hasPrefix("/") else {
                throw ConfigurationError(file: "command line", key: "--route", "'\(link)' must be an absolute path")
            }
            return .pty(PtyConfiguration(link: link))
        }
        guard text.hasPrefix("unix:") else {
            throw ConfigurationError(
                file: "command line",
                key: "--route",
                "unknown target '\(text)' (expected unix:PATH, pty:LINK or serial:DEVICE[,baud=N,…])"
            )
        }
        let path = String(text.dropFirst(5))
        if let problem = problemWithSocketPath(path) {
            throw ConfigurationError(file: "command line", key: "--route", problem)
        }
        return .unix(path: path)
    }

    /// Parses a control socket address, `unix:PATH` (or just an absolute PATH), or `systemd:NAME`
    /// for a passed socket (kept as written); or says what is wrong.
    public static func parseControl(_ text: String) -> Result<String, ConfigurationError> {
        if text.hasPrefix("systemd:") {
            // A socket passed by the service manager under this FileDescriptorName=.
            guard case .success = ListenAddress.parse(text) else {
                return .failure(
                    ConfigurationError(file: "command line", key: "--control", "'systemd:' needs a socket name")
                )
            }
            return .success(text)
        }
        let path = text.hasPrefix("unix:") ? String(text.dropFirst(5)) : text
        if let problem = problemWithSocketPath(path) {
            return .failure(ConfigurationError(file: "command line", key: "--control", problem))
        }
        return .success(path)
    }

    /// What is wrong with a `unix:` target path, if anything: it must be absolute and fit in
    /// `sockaddr_un`.
    static func problemWithSocketPath(_ path: String) -> String? {
        if !path.hasPrefix("/") { return "'\(path)' must be an absolute path" }
        if path.utf8.count >= 108 { return "socket path is longer than 107 bytes" }
        return nil
    }
}

/// A `pty:` route: a pty allocated at start, reachable through a symlink to its slave.
public struct PtyConfiguration: Sendable, Equatable {
    /// The symlink to the slave device that exporter processes open.
    public var link: String
    /// File mode of the slave device (default: left as the system sets it, 0620).
    public var mode: UInt32?
    /// Group of the slave device.
    public var group: String?
    /// Output bytes kept and replayed to each new attachment.
    public var scrollback: Int = 64 * 1024
    /// Output bytes an attachment may fall behind before it is cut.
    public var lagLimit: Int = 1024 * 1024
    /// Streams that may be attached at once; nil: no limit.
    public var maxAttachments: Int?

    /// Creates a pty route configuration.
    public init(link: String, mode: UInt32? = nil, group: String? = nil) {
        self.link = link
        self.mode = mode
        self.group = group
    }
}

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

    /// Creates the default limits.
    public init() {}
}
