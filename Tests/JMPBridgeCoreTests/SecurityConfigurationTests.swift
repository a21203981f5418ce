import Foundation
import NIOCore
import Testing

@testable import JMPBridgeCore

/// The security keys of jmp-bridge.yaml(5): `jwt:`, listener `auth`, `allow-unauthenticated`,
/// `group`, `peer`, `tls.client-ca`, and the new limits; errors name FILE:LINE: KEY.
@Suite("Security configuration")
struct SecurityConfigurationTests {
    @Test("every security key is parsed, with the router's defaults where not given")
    func fullFile() throws {
        let yaml = """
            jwt:
              key-file: /etc/jmp-bridge/router.key
              leeway: 10s
            listen:
              - address: tcp:0.0.0.0:8083
                tls: {cert: /etc/c.pem, key: /etc/k.pem, client-ca: /etc/ca.pem}
              - address: unix:/run/jmp-bridge/grpc.sock
                auth: none
                group: "0"
                peer: {uids: [0, root], gids: ["0"]}
              - address: tcp:127.0.0.1:9
                insecure: true
                auth: none
                allow-unauthenticated: true
            routes:
              console: {pty: {link: /run/console, max-attachments: 2}}
            limits: {max-streams: 10, idle-timeout: 1h}
            """
        var configuration = try ConfigurationLoader.parse(yaml: yaml, file: file)
        try configuration.finalize()
        #expect(
            configuration.jwt
                == JWTConfiguration(keyFile: "/etc/jmp-bridge/router.key", leeway: .seconds(10), line: 2)
        )
        #expect(configuration.jwt?.issuer == "https://jumpstarter.dev/stream")
        #expect(configuration.jwt?.audience == "https://jumpstarter.dev/router")
        let listeners = configuration.listeners
        #expect(listeners[0].tls?.clientCA == "/etc/ca.pem")
        #expect(listeners[0].effectiveAuth(jwtConfigured: true) == .jwt)
        #expect(listeners[1].auth == ListenerAuth.none)
        #expect(listeners[1].group == "0")
        #expect(listeners[1].peer == PeerAllowlist(uids: [0, 0], gids: [0]))
        #expect(listeners[2].allowUnauthenticated)
        guard case .pty(let pty) = configuration.routes["console"]?.target else {
            Issue.record("no console route")
            return
        }
        #expect(pty.maxAttachments == 2)
        #expect(configuration.limits.maxStreams == 10)
        #expect(configuration.limits.idleTimeout == .hours(1))
    }

    @Test("defaults: no jwt section means auth none; 4096 streams in total; no idle timeout")
    func defaults() throws {
        let configuration = try ConfigurationLoader.parse(yaml: "listen: [unix:/run/x.sock]", file: file)
        #expect(configuration.jwt == nil)
        #expect(configuration.listeners[0].effectiveAuth(jwtConfigured: false) == ListenerAuth.none)
        #expect(configuration.limits.maxStreams == 4096)
        #expect(configuration.limits.idleTimeout == nil)
    }

    @Test("mistakes in the security keys name their line and key")
    func errors() {
        expectError("jwt: {issuer: x}", line: 1, key: "jwt", message: "missing 'key-file'")
        expectError("jwt:\n  key-file: router.key\n", line: 2, key: "jwt.key-file", message: "absolute path")
        expectError("jwt:\n  key-file: /k\n  leeway: 1h\n", line: 3, key: "jwt.leeway", message: "at most 10m")
        expectError("jwt:\n  key-file: /k\n  algorithm: none\n", line: 3, key: "jwt.algorithm", message: "unknown key")
        expectError(
            "listen:\n  - address: unix:/x\n    auth: maybe\n",
            line: 3,
            key: "listen[0].auth",
            message: "not jwt or none"
        )
        expectError(
            "listen:\n  - address: tcp:0.0.0.0:1\n    insecure: true\n    peer: {uids: [0]}\n",
            line: 4,
            key: "listen[0].peer",
            message: "unix: listeners only"
        )
        expectError(
            "listen:\n  - address: unix:/x\n    peer: {uids: [no-such-user-jmp]}\n",
            line: 3,
            key: "listen[0].peer.uids",
            message: "unknown user"
        )
        expectError(
            "listen:\n  - address: unix:/x\n    peer: {}\n",
            line: 3,
            key: "listen[0].peer",
            message: "admits nobody"
        )
        expectError("limits:\n  max-streams: 0\n", line: 2, key: "limits.max-streams", message: "out of range")
        expectError(
            "routes:\n  c: {pty: {link: /c, max-attachments: x}}\n",
            line: 2,
            key: "routes.c.pty.max-attachments",
            message: "whole number"
        )
    }

    @Test("a tcp listener without authentication must say allow-unauthenticated; auth: jwt needs a jwt section")
    func unauthenticatedTCP() throws {
        var open = try ConfigurationLoader.parse(
            yaml: "listen:\n  - address: tcp:0.0.0.0:8083\n    insecure: true\nroutes: {s: {unix: /s}}\n",
            file: file
        )
        #expect(throws: ConfigurationError.self) { try open.finalize() }
        do throws(ConfigurationError) {
            try open.finalize()
        } catch {
            #expect(error.line == 2)
            #expect(error.message.contains("allow-unauthenticated"))
        }
        var jwtless = try ConfigurationLoader.parse(
            yaml: "listen:\n  - address: unix:/x\n    auth: jwt\nroutes: {s: {unix: /s}}\n",
            file: file
        )
        #expect(throws: ConfigurationError.self) { try jwtless.finalize() }
    }

    @Test("the key file: its bytes, one trailing newline ignored, at least 32 bytes; errors never show it")
    func keyFile() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/router.key"
        let secret = String(repeating: "s", count: 32)
        try Data((secret + "\n").utf8).write(to: URL(fileURLWithPath: path))
        #expect(try TokenVerifier.readKey(path) == Array(secret.utf8))
        try Data((secret + "\n\n").utf8).write(to: URL(fileURLWithPath: path))
        #expect(try TokenVerifier.readKey(path) == Array((secret + "\n").utf8))
        try Data("short-secret\n".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try TokenVerifier.readKey(path)
            Issue.record("a 12-byte key was accepted")
        } catch {
            #expect(error.description.contains("at least 32"))
            #expect(!error.description.contains("short-secret"))
        }
        #expect(throws: BridgeError.self) { try TokenVerifier.readKey("\(directory)/missing") }
    }
}
