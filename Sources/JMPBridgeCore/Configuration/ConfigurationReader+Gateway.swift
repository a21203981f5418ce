import JMPGateway
import NIOCore
import Yams

extension ConfigurationLoader {
    /// The keys of `gateway:`.
    public static let gatewayKeys = [
        "listen", "advertise", "controller", "router", "keepalive", "connect-timeout", "idle-timeout",
    ]
    /// The keys of `gateway.controller`.
    public static let gatewayControllerKeys = ["endpoint", "ca", "insecure"]
    /// The keys of `gateway.router`.
    public static let gatewayRouterKeys = ["ca", "insecure"]
}

/// The `gateway:` section.
extension ConfigurationReader {
    func gateway(_ node: Node) throws(ConfigurationError) -> GatewayConfiguration {
        let fields = try mapping(node, key: "gateway", allowed: ConfigurationLoader.gatewayKeys)
        guard let listenNode = fields.first(where: { $0.0 == "listen" })?.1 else {
            throw error(node, key: "gateway", "missing 'listen' (where the local exporters connect)")
        }
        guard let controllerNode = fields.first(where: { $0.0 == "controller" })?.1 else {
            throw error(node, key: "gateway", "missing 'controller' (the real controller's endpoint)")
        }
        let listener = try self.listener(listenNode, key: "gateway.listen")
        let controllerFields = try mapping(
            controllerNode,
            key: "gateway.controller",
            allowed: ConfigurationLoader.gatewayControllerKeys
        )
        guard let endpointNode = controllerFields.first(where: { $0.0 == "endpoint" })?.1 else {
            throw error(controllerNode, key: "gateway.controller", "missing 'endpoint' (HOST:PORT of the controller)")
        }
        let endpointText = try string(endpointNode, key: "gateway.controller.endpoint")
        guard let controller = UpstreamEndpoint(parsing: endpointText) else {
            throw error(endpointNode, key: "gateway.controller.endpoint", "'\(endpointText)' is not HOST:PORT")
        }
        var gateway = GatewayConfiguration(listener: listener, controller: controller, line: node.mark?.line)
        gateway.controllerTrust = try self.trust(controllerFields, node: controllerNode, key: "gateway.controller")
        gateway.controllerLine = controllerNode.mark?.line
        for (name, value) in fields {
            switch name {
            case "advertise":
                let text = try string(value, key: "gateway.advertise")
                guard text.hasPrefix("unix:") || UpstreamEndpoint(parsing: text) != nil else {
                    throw error(value, key: "gateway.advertise", "'\(text)' is not HOST:PORT or unix:PATH")
                }
                gateway.advertise = text
            case "router":
                let routerFields = try mapping(
                    value,
                    key: "gateway.router",
                    allowed: ConfigurationLoader.gatewayRouterKeys
                )
                gateway.routerTrust = try self.trust(routerFields, node: value, key: "gateway.router")
                gateway.routerLine = value.mark?.line
            case "keepalive":
                gateway.keepalive = try self.secondOrMoreOrOff(
                    value,
                    key: "gateway.keepalive",
                    "at least 1s (Jumpstarter's controller refuses faster PINGs), or off"
                )
            case "connect-timeout":
                let timeout = try duration(value, key: "gateway.connect-timeout")
                guard timeout > .zero else { throw error(value, key: "gateway.connect-timeout", "must be more than 0") }
                gateway.connectTimeout = timeout
            case "idle-timeout":
                gateway.idleTimeout = try self.secondOrMoreOrOff(
                    value,
                    key: "gateway.idle-timeout",
                    "at least 1s, or off"
                )
            default:
                break
            }
        }
        return gateway
    }

    /// `ca: FILE` or `insecure: true` (not both); neither: the system's CA certificates.
    private func trust(_ fields: [(String, Node)], node: Node, key: String) throws(ConfigurationError) -> UpstreamTrust
    {
        let ca = fields.first(where: { $0.0 == "ca" })?.1
        let insecure =
            try fields.first(where: { $0.0 == "insecure" }).map { field throws(ConfigurationError) in
                try bool(field.1, key: "\(key).insecure")
            } ?? false
        switch (ca, insecure) {
        case (.some, true):
            throw error(node, key: key, "'ca' and 'insecure: true' contradict each other")
        case (.some(let caNode), false):
            let path = try string(caNode, key: "\(key).ca")
            guard path.hasPrefix("/") else {
                throw error(caNode, key: "\(key).ca", "'\(path)' must be an absolute path")
            }
            return .caFile(path)
        case (.none, true):
            return .insecure
        case (.none, false):
            return .systemRoots
        }
    }
}
