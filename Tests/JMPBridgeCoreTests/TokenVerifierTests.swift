import Foundation
import JWTKit
import Testing

@testable import JMPBridgeCore

/// ``TokenVerifier`` on its own: what the router accepts, and the few places it is stricter.
@Suite("Token verifier")
struct TokenVerifierTests {
    private func verifier(key: [UInt8] = Tokens.key) async -> TokenVerifier {
        await TokenVerifier.make(key: key, configuration: JWTConfiguration(keyFile: "/unused"))
    }

    @Test("a 32-byte key verifies HS256 and says why HS512 tokens cannot be verified")
    func shortKey() async throws {
        let key = Array(String(repeating: "k", count: 32).utf8)
        let verifier = await self.verifier(key: key)
        let hs256 = try await Tokens.mint(key: key)
        #expect(
            try verifier.verify(authorization: "Bearer \(hs256)").get().iss?.value == JWTConfiguration.defaultIssuer
        )
        let hs512 = try await Tokens.mint(key: Tokens.key, digest: .sha512)
        guard case .failure(let refusal) = verifier.verify(authorization: "Bearer \(hs512)") else {
            Issue.record("an HS512 token was accepted with a 32-byte key")
            return
        }
        #expect(refusal.status.code == .unauthenticated)
        #expect(refusal.status.message.contains("at least 64 bytes"))
        #expect(refusal.reason == .keyTooShort)
    }

    @Test("a valid token is refused when the request carries another authorization value")
    func repeatedAuthorization() async throws {
        let verifier = await self.verifier()
        let token = try await Tokens.mint()
        #expect((try? verifier.verify(authorization: "Bearer \(token)").get()) != nil)
        guard case .failure(let refusal) = verifier.verify(authorization: "Bearer \(token)", repeated: true) else {
            Issue.record("a token was picked from several authorization values")
            return
        }
        #expect(refusal.status.code == .unauthenticated)
        #expect(refusal.status.message == "more than one authorization header")
        #expect(refusal.reason == .repeated)
    }

    @Test("an audience given as one string, and the scheme in any case, are accepted")
    func lenientForms() async throws {
        let verifier = await self.verifier()
        var claims = Tokens.claims()
        claims.aud = AudienceClaim(value: JWTConfiguration.defaultAudience)
        let token = try await Tokens.mint(claims)
        for scheme in ["Bearer", "bearer", "BEARER"] {
            #expect((try? verifier.verify(authorization: "\(scheme) \(token)").get()) != nil, "\(scheme)")
        }
    }

    @Test("a header that names another HMAC than the one that signed is refused")
    func algorithmMismatch() async throws {
        let verifier = await self.verifier()
        let token = try await Tokens.mint(digest: .sha384)
        // Swap the header for one that claims HS256, keeping claims and signature.
        let header = Tokens.base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let forged = ([header] + token.split(separator: ".").dropFirst().map(String.init)).joined(separator: ".")
        guard case .failure(let refusal) = verifier.verify(authorization: "Bearer \(forged)") else {
            Issue.record("a token with a swapped algorithm was accepted")
            return
        }
        #expect(refusal.status.message.contains("signature"))
        #expect(refusal.reason == .signature)
    }

    @Test("the claim checks use the leeway at both ends")
    func claimBoundaries() async {
        let verifier = await self.verifier()
        let now = Date()
        var claims = Tokens.claims()
        claims.exp = ExpirationClaim(value: now.addingTimeInterval(-29))
        #expect((try? verifier.check(claims, now: now).get()) != nil)
        claims.exp = ExpirationClaim(value: now.addingTimeInterval(-31))
        #expect((try? verifier.check(claims, now: now).get()) == nil)
        claims = Tokens.claims()
        claims.nbf = NotBeforeClaim(value: now.addingTimeInterval(29))
        #expect((try? verifier.check(claims, now: now).get()) != nil)
        claims.nbf = NotBeforeClaim(value: now.addingTimeInterval(31))
        #expect((try? verifier.check(claims, now: now).get()) == nil)
    }
}
