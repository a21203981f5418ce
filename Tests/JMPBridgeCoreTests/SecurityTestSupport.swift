import Foundation
import JMPBridgeCore
import JWTKit
import Logging
import NIOConcurrencyHelpers

/// Router-style tokens for the tests, minted with jwt-kit as Jumpstarter's controller mints them.
enum Tokens {
    /// 64 bytes, the shape of `openssl rand -hex 32` that Jumpstarter's chart uses for ROUTER_KEY.
    static let key = Array("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".utf8)
    static let otherKey = Array("60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752".utf8)

    /// Claims like the controller's: iss, sub, aud, exp (+30 min), nbf, iat (now); offsets in seconds.
    static func claims(
        expiresIn: TimeInterval = 1800,
        notBefore: TimeInterval = 0,
        issuedAt: TimeInterval = 0,
        issuer: String = JWTConfiguration.defaultIssuer,
        audience: String = JWTConfiguration.defaultAudience,
        route: String? = nil
    ) -> RouterTokenClaims {
        let now = Date()
        return RouterTokenClaims(
            iss: IssuerClaim(value: issuer),
            sub: SubjectClaim(value: UUID().uuidString.lowercased()),
            aud: AudienceClaim(value: [audience]),
            exp: ExpirationClaim(value: now.addingTimeInterval(expiresIn)),
            nbf: NotBeforeClaim(value: now.addingTimeInterval(notBefore)),
            iat: IssuedAtClaim(value: now.addingTimeInterval(issuedAt)),
            route: route
        )
    }

    static func mint(
        _ claims: RouterTokenClaims = Tokens.claims(),
        key: [UInt8] = Tokens.key,
        digest: DigestAlgorithm = .sha256
    ) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: key), digestAlgorithm: digest)
        return try await keys.sign(claims)
    }

    /// An unsigned token (`alg: none`) with valid claims.
    static func unsigned() throws -> String {
        let header = Data(#"{"alg":"none","typ":"JWT"}"#.utf8)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        let payload = try encoder.encode(Tokens.claims())
        return "\(base64URL(header)).\(base64URL(payload))."
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Writes the key to a file in `directory` (with the trailing newline an editor adds) and
    /// returns the `jwt:` configuration for it.
    static func configuration(in directory: String, key: [UInt8] = Tokens.key) throws -> JWTConfiguration {
        let path = "\(directory)/router.key"
        try Data(key + [UInt8(ascii: "\n")]).write(to: URL(fileURLWithPath: path))
        return JWTConfiguration(keyFile: path)
    }
}

/// A log handler that keeps every message with its metadata, at trace level.
final class CapturedLog: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])
    private let watchers = NIOLockedValueBox<[(text: String, signal: Signal)]>([])

    var all: [String] { self.lines.withLockedValue { $0 } }

    /// Returns once a line containing `text` has been logged (or the waiting task is cancelled).
    func waitForLine(containing text: String) async {
        let signal = Signal()
        self.watchers.withLockedValue { $0.append((text, signal)) }
        if self.all.contains(where: { $0.contains(text) }) { signal.fire() }
        await signal.wait()
    }

    func logger() -> Logger {
        var logger = Logger(label: "jmp-bridge-test") { _ in Handler(log: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ line: String) {
        self.lines.withLockedValue { $0.append(line) }
        for watcher in self.watchers.withLockedValue({ $0 }) where line.contains(watcher.text) {
            watcher.signal.fire()
        }
    }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = self.metadata
            for (key, value) in event.metadata ?? [:] { all[key] = value }
            let rendered = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            self.log.append("\(event.level) \(event.message) \(rendered)")
        }
    }
}
