import JMPGateway
import NIOCore
import Testing

@testable import JMPBridgeCore

/// The reload plan is a pure comparison of two configurations: these tests need no I/O.
@Suite("Reload plan")
struct ReloadPlanTests {
    static func configuration(_ routes: [RouteConfiguration], defaultRoute: String? = nil) -> BridgeConfiguration {
        BridgeConfiguration(
            listeners: [ListenerConfiguration(address: .unix(path: "/run/jmp-bridge/grpc.sock"))],
            routes: Dictionary(uniqueKeysWithValues: routes.map { ($0.name, $0) }),
            defaultRoute: defaultRoute,
            source: "/etc/jmp-bridge/old.yaml"
        )
    }

    static func unix(_ name: String, _ path: String) -> RouteConfiguration {
        RouteConfiguration(name: name, target: .unix(path: path))
    }

    @Test("the same configuration plans nothing")
    func unchanged() {
        let old = Self.configuration([Self.unix("a", "/a.sock"), Self.unix("b", "/b.sock")], defaultRoute: "a")
        let plan = ReloadPlan(from: old, to: old)
        #expect(plan.added.isEmpty && plan.removed.isEmpty && plan.changed.isEmpty && plan.needRestart.isEmpty)
        #expect(plan.result == old)
    }

    @Test("routes added, removed and changed are found and sorted by name; equal ones are left alone")
    func routes() {
        let old = Self.configuration([
            Self.unix("keep", "/keep.sock"),
            Self.unix("gone-2", "/g2.sock"),
            Self.unix("gone-1", "/g1.sock"),
            Self.unix("moved", "/old.sock"),
            RouteConfiguration(name: "console", target: .pty(PtyConfiguration(link: "/run/console"))),
            Self.unix("door", "/door.sock"),
        ])
        var door = Self.unix("door", "/door.sock")
        door.local = LocalDoorConfiguration(address: .unix(path: "/run/door"))
        let new = Self.configuration([
            Self.unix("keep", "/keep.sock"),
            Self.unix("new-b", "/nb.sock"),
            Self.unix("new-a", "/na.sock"),
            Self.unix("moved", "/new.sock"),
            RouteConfiguration(name: "console", target: .pty(PtyConfiguration(link: "/run/console", mode: 0o660))),
            door,
        ])
        let plan = ReloadPlan(from: old, to: new)
        #expect(plan.added == ["new-a", "new-b"])
        #expect(plan.removed == ["gone-1", "gone-2"])
        #expect(plan.changed == ["console", "door", "moved"])
        #expect(plan.needRestart.isEmpty)
    }

    @Test(
        "listener, control, limit, linger, exit-idle-time, jwt and gateway changes need a restart and are not applied"
    )
    func needRestart() {
        let old = Self.configuration([Self.unix("a", "/a.sock")])
        var new = old
        new.listeners = [ListenerConfiguration(address: .unix(path: "/run/jmp-bridge/other.sock"))]
        new.control = "/run/jmp-bridge/other-control.sock"
        new.limits.maxPayloadSize = old.limits.maxPayloadSize / 2
        new.linger = .milliseconds(1)
        new.exitIdleTime = .seconds(60)
        new.jwt = JWTConfiguration(keyFile: "/etc/jmp-bridge/router.key")
        new.gateway = GatewayConfiguration(
            listener: ListenerConfiguration(address: .unix(path: "/run/jmp-bridge/gateway.sock")),
            controller: UpstreamEndpoint(host: "controller.example.com", port: 443)
        )
        let plan = ReloadPlan(from: old, to: new)
        #expect(plan.needRestart == ["listen", "control", "limits", "linger", "exit-idle-time", "jwt", "gateway"])
        #expect(plan.added.isEmpty && plan.removed.isEmpty && plan.changed.isEmpty)
        // Only routes, the default route and the source change in the configuration in force.
        #expect(plan.result == old)
    }

    @Test("sections that only moved in the file (another line number) are not changes")
    func movedSections() {
        var old = Self.configuration([Self.unix("a", "/a.sock")])
        old.routes["a"]?.line = 4
        old.listeners[0].line = 2
        old.jwt = JWTConfiguration(keyFile: "/etc/jmp-bridge/router.key", line: 5)
        old.gateway = GatewayConfiguration(
            listener: ListenerConfiguration(address: .unix(path: "/run/jmp-bridge/gateway.sock"), line: 9),
            controller: UpstreamEndpoint(host: "controller.example.com", port: 443),
            line: 8
        )
        old.gateway?.controllerLine = 12
        old.gateway?.routerLine = 14
        // A route and a comment added near the top: every later section moves down.
        var new = Self.configuration([Self.unix("a", "/a.sock"), Self.unix("b", "/b.sock")])
        new.routes["a"]?.line = 5
        new.listeners[0].line = 3
        new.jwt = JWTConfiguration(keyFile: "/etc/jmp-bridge/router.key", line: 7)
        new.gateway = GatewayConfiguration(
            listener: ListenerConfiguration(address: .unix(path: "/run/jmp-bridge/gateway.sock"), line: 11),
            controller: UpstreamEndpoint(host: "controller.example.com", port: 443),
            line: 10
        )
        new.gateway?.controllerLine = 14
        new.gateway?.routerLine = 16
        let plan = ReloadPlan(from: old, to: new)
        #expect(plan.needRestart.isEmpty)
        #expect(plan.added == ["b"])
        #expect(plan.changed.isEmpty)
    }

    @Test("the configuration in force afterwards takes the new routes, default route and source")
    func result() {
        let old = Self.configuration([Self.unix("a", "/a.sock")], defaultRoute: "a")
        var new = Self.configuration([Self.unix("a", "/a.sock"), Self.unix("b", "/b.sock")], defaultRoute: "b")
        new.source = "/etc/jmp-bridge/new.yaml"
        new.linger = .milliseconds(1)
        let plan = ReloadPlan(from: old, to: new)
        #expect(plan.result.routes == new.routes)
        #expect(plan.result.defaultRoute == "b")
        #expect(plan.result.source == "/etc/jmp-bridge/new.yaml")
        #expect(plan.result.linger == old.linger)
        #expect(plan.result.listeners == old.listeners)
    }
}
