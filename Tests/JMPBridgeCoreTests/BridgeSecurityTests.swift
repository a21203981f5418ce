import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import JMPBridgeCore
import JWTKit
import NIOCore
import Testing

/// JWT bearer tokens as Jumpstarter's router checks them, route-bound tokens and peer
/// credentials; every refusal next to a healthy (authenticated) neighbour stream.
@Suite("Authentication", .timeLimit(.minutes(2)))
struct BridgeSecurityTests {
    /// A bridge whose listener requires a token signed with ``Tokens/key``.
    private func withJWTBridge<T: Sendable>(
        routes: [String: String] = ["echo": "echo"],
        log: CapturedLog? = nil,
        _ body: (BridgeHarness) async throws -> T
    ) async throws -> T {
        try await BridgeHarness.with(routes: routes, logger: log?.logger()) { configuration, directory in
            configuration.jwt = try? Tokens.configuration(in: directory)
        } _: { bridge in
            try await body(bridge)
        }
    }

    private static func bearer(_ token: String) -> Metadata { ["authorization": "Bearer \(token)"] }

    @Test("a valid router token is admitted")
    func validToken() async throws {
        let token = try await Tokens.mint()
        try await withJWTBridge { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                try await bridge.withClient { client in
                    let received = try await Router.call(client, metadata: Self.bearer(token)) { writer in
                        try await writer.write(Router.data(Array("hello".utf8)))
                    }
                    #expect(received.bytes == Array("hello".utf8))
                    #expect(received.goaway)
                }
            }
        }
    }

    @Test("HS384 and HS512 tokens are admitted with a long enough key")
    func strongerAlgorithms() async throws {
        for digest in [DigestAlgorithm.sha384, .sha512] {
            let token = try await Tokens.mint(digest: digest)
            try await withJWTBridge { bridge in
                try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                    try await bridge.withClient { client in
                        let received = try await Router.call(client, metadata: Self.bearer(token)) { writer in
                            try await writer.write(Router.data([1, 2, 3]))
                        }
                        #expect(received.bytes == [1, 2, 3])
                    }
                }
            }
        }
    }

    enum BadToken: String, CaseIterable, Sendable {
        case expired, notYetValid, issuedInTheFuture, wrongKey, wrongIssuer, wrongAudience, algNone, noExpiry
        case malformed, notBearer, missing
        /// A valid token, and a second authorization value after it.
        case repeated

        /// The metadata to send, and the token in it (if any).
        func metadata() async throws -> (Metadata, String?) {
            let token: String
            switch self {
            case .expired: token = try await Tokens.mint(Tokens.claims(expiresIn: -120))
            case .notYetValid: token = try await Tokens.mint(Tokens.claims(notBefore: 600))
            case .issuedInTheFuture: token = try await Tokens.mint(Tokens.claims(issuedAt: 600))
            case .wrongKey: token = try await Tokens.mint(key: Tokens.otherKey)
            case .wrongIssuer: token = try await Tokens.mint(Tokens.claims(issuer: "https://example.com/stream"))
            case .wrongAudience: token = try await Tokens.mint(Tokens.claims(audience: "https://example.com/router"))
            case .algNone: token = try Tokens.unsigned()
            case .noExpiry:
                var claims = Tokens.claims()
                claims.exp = nil
                token = try await Tokens.mint(claims)
            case .malformed: token = "not.a-token"
            case .notBearer: return (["authorization": "Basic dXNlcjpwYXNz"], nil)
            case .missing: return ([:], nil)
            case .repeated:
                let valid = try await Tokens.mint()
                var metadata: Metadata = ["authorization": "Bearer \(valid)"]
                metadata.addString("Bearer another-credential", forKey: "authorization")
                return (metadata, valid)
            }
            return (["authorization": "Bearer \(token)"], token)
        }
    }

    @Test("a bad or missing token is UNAUTHENTICATED and the neighbour keeps every byte", arguments: BadToken.allCases)
    func badToken(_ bad: BadToken) async throws {
        let good = try await Tokens.mint()
        let (metadata, token) = try await bad.metadata()
        try await withJWTBridge { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let (code, message) = try await BridgeFailureTests().statusWithHealthyNeighbour(
                    bridge,
                    metadata: metadata,
                    neighbourMetadata: Self.bearer(good)
                ) { _, ended in await ended.wait() }
                #expect(code == .unauthenticated, "\(bad): \(message)")
                for part in (token ?? "").split(separator: ".") where part.count > 8 {
                    #expect(!message.contains(part), "the message repeats the token")
                }
            }
        }
    }

    @Test("the tolerated clock skew (leeway) admits a token that expired a moment ago")
    func leeway() async throws {
        let token = try await Tokens.mint(Tokens.claims(expiresIn: -5, notBefore: 5, issuedAt: 5))
        try await withJWTBridge { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                try await bridge.withClient { client in
                    let received = try await Router.call(client, metadata: Self.bearer(token)) { writer in
                        try await writer.write(Router.data([7]))
                    }
                    #expect(received.bytes == [7])
                }
            }
        }
    }

    @Test("a token bound to a route may use that route only (PERMISSION_DENIED elsewhere)")
    func routeClaim() async throws {
        let good = try await Tokens.mint()
        let bound = try await Tokens.mint(Tokens.claims(route: "echo"))
        try await withJWTBridge(routes: ["echo": "echo", "other": "echo"]) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                var metadata = Self.bearer(bound)
                metadata.addString("other", forKey: "jmp-route")
                let (code, message) = try await BridgeFailureTests().statusWithHealthyNeighbour(
                    bridge,
                    metadata: metadata,
                    neighbourMetadata: Self.bearer(good)
                ) { _, ended in await ended.wait() }
                #expect(code == .permissionDenied)
                #expect(message.contains("echo"))
                // The route it is bound to, named or as the default route, works.
                try await bridge.withClient { client in
                    var named = Self.bearer(bound)
                    named.addString("echo", forKey: "jmp-route")
                    for metadata in [named, Self.bearer(bound)] {
                        let received = try await Router.call(client, metadata: metadata) { writer in
                            try await writer.write(Router.data([9]))
                        }
                        #expect(received.bytes == [9])
                    }
                }
            }
        }
    }

    @Test("neither the token nor the key appears in the log, at trace level, for a refused and an admitted stream")
    func noSecretsInLogs() async throws {
        let log = CapturedLog()
        let good = try await Tokens.mint()
        let wrong = try await Tokens.mint(key: Tokens.otherKey)
        try await withJWTBridge(log: log) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                try await bridge.withClient { client in
                    _ = try await Router.call(client, metadata: Self.bearer(good)) { writer in
                        try await writer.write(Router.data([1]))
                    }
                    await #expect(throws: RPCError.self) {
                        _ = try await Router.call(client, metadata: Self.bearer(wrong)) { _ in }
                    }
                }
            }
        }
        let lines = log.all
        #expect(lines.contains { $0.contains("UNAUTHENTICATED") }, "the refusal is logged")
        #expect(lines.contains { $0.contains("status=OK") }, "the admitted stream is logged")
        let key = String(decoding: Tokens.key, as: UTF8.self)
        for line in lines {
            for token in [good, wrong] {
                // No part of a token: header, claims or signature.
                for part in token.split(separator: ".") where part.count > 8 {
                    #expect(!line.contains(part), "a log line holds part of a token: \(line)")
                }
            }
            #expect(!line.contains(key.prefix(16)), "a log line holds the key: \(line)")
        }
    }

    @Test("a unix listener's peer allowlist refuses other peers before HTTP/2 and admits listed ones")
    func peerAllowlist() async throws {
        let log = CapturedLog()
        try await BridgeHarness.with(logger: log.logger()) { configuration, directory in
            // The harness listener admits only another user; a second listener admits us by gid.
            configuration.listeners[0].peer = PeerAllowlist(uids: [getuid() &+ 4242])
            var open = ListenerConfiguration(address: .unix(path: "\(directory)/open.sock"))
            open.peer = PeerAllowlist(gids: [getgid()])
            configuration.listeners.append(open)
        } _: { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                try await bridge.withClient(socket: "\(bridge.directory)/open.sock") { client in
                    // A long transfer on the admitted listener while the other refuses.
                    let received = try await Router.call(client) { writer in
                        for chunk in pseudoRandomBytes(count: 100_000, seed: 5).chunks(ofCount: 10_000) {
                            try await writer.write(Router.data(Array(chunk)))
                            if chunk.startIndex == 30_000 {
                                let refused = try await bridge.withClient { other in
                                    do {
                                        _ = try await Router.call(other) { _ in }
                                        return nil as RPCError.Code?
                                    } catch let error as RPCError {
                                        return error.code
                                    }
                                }
                                #expect(refused == .unavailable)
                            }
                        }
                    }
                    #expect(received.bytes.elementsEqual(pseudoRandomBytes(count: 100_000, seed: 5)))
                }
            }
        }
        #expect(log.all.contains { $0.contains("refused a connection") && $0.contains("uid \(getuid())") })
    }
}
