import JMPGateway
import NIOCore
import Testing

@testable import JMPBridgeCore

/// The `gateway:` section: what it parses to and the errors that name file, line and key.
@Suite struct GatewayConfigurationTests {
    @Test func aFullSectionParses() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                gateway:
                  listen: {address: tcp:127.0.0.1:8443, tls: {cert: /etc/c.pem, key: /etc/k.pem}}
                  advertise: lab-host.example.com:8443
                  controller:
                    endpoint: grpc.jumpstarter.example.com:443
                    ca: /etc/jmp-bridge/controller-ca.pem
                  router: {insecure: true}
                  keepalive: 20s
                  connect-timeout: 3s
                  idle-timeout: 5m
                """,
            file: file
        )
        let gateway = try #require(configuration.gateway)
        #expect(gateway.listener.address == .tcp(host: "127.0.0.1", port: 8443))
        #expect(gateway.listener.tls == TLSFiles(certificate: "/etc/c.pem", key: "/etc/k.pem"))
        #expect(gateway.advertise == "lab-host.example.com:8443")
        #expect(gateway.controller == UpstreamEndpoint(host: "grpc.jumpstarter.example.com", port: 443))
        #expect(gateway.controllerTrust == .caFile("/etc/jmp-bridge/controller-ca.pem"))
        #expect(gateway.routerTrust == .insecure)
        #expect(gateway.keepalive == .seconds(20))
        #expect(gateway.connectTimeout == .seconds(3))
        #expect(gateway.idleTimeout == .minutes(5))
        #expect(gateway.settings().idleTimeout == .minutes(5))
        #expect(gateway.line == 2)  // the section's first key, as for every mapping
        #expect(gateway.controllerLine == 5 && gateway.routerLine == 7)  // for check --files's messages
        // A gateway alone is a complete configuration.
        var finalized = configuration
        try finalized.finalize()
    }

    @Test func defaultsAreSystemRootsAndTheBoundAddress() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: "gateway:\n  listen: unix:/run/jmp-bridge/gateway.sock\n  controller: {endpoint: 'ctl:443'}\n",
            file: file
        )
        let gateway = try #require(configuration.gateway)
        #expect(gateway.controllerTrust == .systemRoots)
        #expect(gateway.routerTrust == nil)
        #expect(gateway.settings().effectiveRouterTrust == .systemRoots)
        #expect(gateway.keepalive == .seconds(30))
        #expect(gateway.idleTimeout == .minutes(30))
        let off = try ConfigurationLoader.parse(
            yaml: "gateway:\n  listen: unix:/run/g.sock\n  controller: {endpoint: 'ctl:443'}\n  idle-timeout: off\n",
            file: file
        )
        #expect(try #require(off.gateway).idleTimeout == nil)
        #expect(try GatewayConfiguration.advertise(for: .tcp(host: "127.0.0.1", port: 5)) == "127.0.0.1:5")
        #expect(try GatewayConfiguration.advertise(for: .tcp(host: "::1", port: 5)) == "[::1]:5")
        #expect(throws: BridgeError.self) { try GatewayConfiguration.advertise(for: .tcp(host: "0.0.0.0", port: 5)) }
    }

    @Test func errorsNameTheLineAndKey() {
        let listen = "  listen: {address: 'tcp:127.0.0.1:1', tls: {cert: /c, key: /k}}\n"
        expectError("gateway:\n  controller: {endpoint: 'c:1'}\n", line: 2, key: "gateway", message: "missing 'listen'")
        expectError("gateway:\n" + listen, line: 2, key: "gateway", message: "missing 'controller'")
        expectError(
            "gateway:\n" + listen + "  controller: {ca: /x}\n",
            line: 3,
            key: "gateway.controller",
            message: "missing 'endpoint'"
        )
        expectError(
            "gateway:\n" + listen + "  controller: {endpoint: 'a b'}\n",
            line: 3,
            key: "gateway.controller.endpoint",
            message: "is not HOST:PORT"
        )
        expectError(
            "gateway:\n" + listen + "  controller: {endpoint: 'c:1', ca: /x, insecure: true}\n",
            line: 3,
            key: "gateway.controller",
            message: "contradict"
        )
        expectError(
            "gateway:\n" + listen + "  controller: {endpoint: 'c:1', ca: x.pem}\n",
            line: 3,
            key: "gateway.controller.ca",
            message: "absolute path"
        )
        expectError(
            "gateway:\n" + listen + "  controller: {endpoint: 'c:1'}\n  keepalive: 10ms\n",
            line: 4,
            key: "gateway.keepalive",
            message: "at least 1s"
        )
        expectError(
            "gateway:\n" + listen + "  controller: {endpoint: 'c:1'}\n  idle-timeout: 500ms\n",
            line: 4,
            key: "gateway.idle-timeout",
            message: "at least 1s, or off"
        )
        expectError(
            "gateway:\n  listen: 'tcp:127.0.0.1:1'\n  controller: {endpoint: 'c:1'}\n",
            line: 2,
            key: "gateway.listen",
            message: "needs 'tls: {cert, key}'"
        )
        expectError(
            "gateway:\n" + listen + "  controller: {endpoint: 'c:1'}\n  routers: {}\n",
            line: 4,
            key: "gateway.routers",
            message: "unknown key"
        )
    }
}
