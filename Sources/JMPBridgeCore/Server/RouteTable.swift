import JMPProtocol

/// An immutable snapshot of the configured routes, used to resolve the route of each new stream.
public struct RouteTable: Sendable {
    /// The routes by name.
    public let routes: [String: RouteConfiguration]
    /// The route for streams that name none.
    public let defaultRoute: String?

    /// Creates a table.
    public init(routes: [String: RouteConfiguration], defaultRoute: String?) {
        self.routes = routes
        self.defaultRoute = defaultRoute
    }

    /// The route a stream asking for `name` (nil: none) gets, or NOT_FOUND saying why not.
    public func resolve(_ name: String?) -> Result<RouteConfiguration, GRPCStatus> {
        guard let name = name ?? self.defaultRoute else {
            return .failure(GRPCStatus(.notFound, "no jmp-route given and no default route is configured"))
        }
        guard let route = self.routes[name] else {
            return .failure(GRPCStatus(.notFound, "unknown route '\(name)'"))
        }
        return .success(route)
    }
}
