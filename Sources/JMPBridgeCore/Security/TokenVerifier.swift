import Foundation
import JMPMetrics
import JMPProtocol
import JMPTLS
import JWTKit
import NIOCore

/// Verifies the `authorization: Bearer <token>` of a stream exactly as Jumpstarter's router does
/// (golang-jwt with `WithIssuer`, `WithAudience`, `WithIssuedAt`, `WithExpirationRequired` and
/// HS256/HS384/HS512 only), plus a leeway for clock skew.
///
/// Verification is synchronous and cheap (one HMAC and a small JSON decode), so stream handlers
/// call it inline on their event loop. Parsing and the HMAC come from jwt-kit; the claims are
/// checked here so that `nbf`, `iat` and the leeway behave as documented. No message it returns
/// contains the token or the key.
public final class TokenVerifier: Sendable {
    /// The algorithms accepted, by JWT name, each keyed with the shared secret.
    private let algorithms: [String: any JWTAlgorithm]
    /// The HMAC algorithms the key is too short for, with the length each needs.
    private let tooShortFor: [String: Int]
    private let issuer: String
    private let audience: String
    private let leeway: TimeInterval

    /// The longest `authorization` value looked at; router tokens are about 400 bytes.
    static let maximumTokenLength = 8192

    private init(
        algorithms: [String: any JWTAlgorithm],
        tooShortFor: [String: Int],
        configuration: JWTConfiguration
    ) {
        self.algorithms = algorithms
        self.tooShortFor = tooShortFor
        self.issuer = configuration.issuer
        self.audience = configuration.audience
        self.leeway = Double(configuration.leeway.nanoseconds) / 1e9
    }

    /// Reads the key file and prepares the verifier; errors name the file, never its contents.
    public static func load(_ configuration: JWTConfiguration) async throws(BridgeError) -> TokenVerifier {
        let key = try Self.readKey(configuration.keyFile)
        return await Self.make(key: key, configuration: configuration)
    }

    /// A verifier for `key` (the secret's bytes).
    static func make(key: [UInt8], configuration: JWTConfiguration) async -> TokenVerifier {
        var algorithms: [String: any JWTAlgorithm] = [:]
        var tooShortFor: [String: Int] = [:]
        let digests: [(String, DigestAlgorithm, Int)] = [
            ("HS256", .sha256, 32), ("HS384", .sha384, 48), ("HS512", .sha512, 64),
        ]
        for (name, digest, minimum) in digests {
            // jwt-kit requires a key at least as long as the digest (RFC 7518 §3.2).
            guard key.count >= minimum else {
                tooShortFor[name] = minimum
                continue
            }
            let collection = JWTKeyCollection()
            await collection.add(hmac: HMACKey(from: key), digestAlgorithm: digest)
            if let algorithm = try? await collection.getKey() {
                algorithms[name] = algorithm
            }
        }
        return TokenVerifier(algorithms: algorithms, tooShortFor: tooShortFor, configuration: configuration)
    }

    /// The secret as the router's `ROUTER_KEY` holds it: the file's bytes, one trailing newline
    /// ignored. At least 32 bytes (what HS256 needs).
    static func readKey(_ path: String) throws(BridgeError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            // The system's reason (No such file or directory, Permission denied, Is a directory).
            let reason = PEMFileProblem.unreadable(path) ?? "cannot read it"
            throw BridgeError("jwt.key-file \(path): \(reason)")
        }
        var key = [UInt8](data)
        if key.last == UInt8(ascii: "\n") { key.removeLast() }
        guard key.count >= 32 else {
            throw BridgeError(
                "jwt.key-file \(path): the key has \(key.count) bytes; at least 32 are needed (HS256)"
            )
        }
        return key
    }

    /// Checks an `authorization` metadata value; `repeated` says the request carried more than
    /// one, which the router refuses (`BearerTokenFromContext`: "multiple authorization headers").
    /// The refusal's UNAUTHENTICATED says what is wrong with it.
    public func verify(authorization: String?, repeated: Bool = false) -> Result<RouterTokenClaims, TokenRefusal> {
        guard let authorization else {
            return Self.refuse(.missing, "no authorization metadata (expected 'Bearer <token>')")
        }
        guard !repeated else {
            return Self.refuse(.repeated, "more than one authorization header")
        }
        guard authorization.utf8.count <= Self.maximumTokenLength else {
            return Self.refuse(.tooLong, "authorization value is too long")
        }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            return Self.refuse(.notBearer, "authorization is not a Bearer token")
        }
        let token = Array(parts[1].trimmingCharacters(in: .whitespaces).utf8)
        return self.verify(token: token)
    }

    /// Checks a compact JWT.
    func verify(token: [UInt8]) -> Result<RouterTokenClaims, TokenRefusal> {
        let period = UInt8(ascii: ".")
        guard let first = token.firstIndex(of: period),
            let second = token[(first + 1)...].firstIndex(of: period)
        else {
            return Self.refuse(.malformed, "malformed token")
        }
        let parsed: (header: JWTHeader, payload: RouterTokenClaims, signature: Data)
        do {
            parsed = try DefaultJWTParser().parse(token, as: RouterTokenClaims.self)
        } catch {
            return Self.refuse(.malformed, "malformed token")
        }
        guard let name = parsed.header.alg, let algorithm = self.algorithms[name] else {
            if let name = parsed.header.alg, let minimum = self.tooShortFor[name] {
                return Self.refuse(
                    .keyTooShort,
                    "\(name) tokens need a key of at least \(minimum) bytes; this key is shorter"
                )
            }
            return Self.refuse(.algorithm, "token algorithm is not HS256, HS384 or HS512")
        }
        guard (try? algorithm.verify(parsed.signature, signs: token[..<second])) == true else {
            return Self.refuse(.signature, "token signature does not verify with the configured key")
        }
        return self.check(parsed.payload, now: Date())
    }

    /// The claim checks, after the signature: what the router checks, with the leeway.
    func check(_ claims: RouterTokenClaims, now: Date) -> Result<RouterTokenClaims, TokenRefusal> {
        guard let exp = claims.exp else {
            return Self.refuse(.noExpiry, "token has no expiry (exp)")
        }
        guard now.timeIntervalSince(exp.value) < self.leeway else {
            return Self.refuse(.expired, "token expired")
        }
        if let nbf = claims.nbf, nbf.value.timeIntervalSince(now) > self.leeway {
            return Self.refuse(.notYetValid, "token is not valid yet (nbf)")
        }
        if let iat = claims.iat, iat.value.timeIntervalSince(now) > self.leeway {
            return Self.refuse(.issuedInFuture, "token was issued in the future (iat)")
        }
        guard claims.iss?.value == self.issuer else {
            return Self.refuse(.issuer, "token issuer is not '\(self.issuer)'")
        }
        guard claims.aud?.value.contains(self.audience) == true else {
            return Self.refuse(.audience, "token audience does not include '\(self.audience)'")
        }
        return .success(claims)
    }

    private static func refuse(_ reason: AuthFailureReason, _ message: String) -> Result<
        RouterTokenClaims, TokenRefusal
    > {
        .failure(TokenRefusal(reason: reason, status: GRPCStatus(.unauthenticated, message)))
    }
}
