import JMPDoors
import NIOCore

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

    /// Line of the route's name in the configuration file, for messages (`check --files`).
    public var line: Int?
    /// The `connect-timeout` of a route that sets none.
    public static let defaultConnectTimeout = TimeAmount.seconds(10)

    /// Creates a route.
    public init(name: String, target: RouteTarget, local: LocalDoorConfiguration? = nil, line: Int? = nil) {
        self.name = name
        self.target = target
        self.local = local
        self.line = line
    }
}
