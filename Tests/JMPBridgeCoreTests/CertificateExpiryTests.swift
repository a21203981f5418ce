import Foundation
import JMPGateway
import JMPTLS
import NIOCore
import Testing

@testable import JMPBridgeCore

/// When a TLS listener's certificate expires: the wording and dates of ``CertificateValidity``,
/// the located warnings of `check --files` and the log lines of ``CertificateWatch``. (The
/// status line, the metric and the log of a running bridge: Tests/Interop/test_certificates.py.)
@Suite("Certificate expiry", .timeLimit(.minutes(1)))
struct CertificateExpiryTests {
    private static let day: Int64 = 86_400

    @Test("notAfter is written as ISO 8601 in UTC")
    func iso8601() {
        #expect(CertificateValidity.iso8601(0) == "1970-01-01T00:00:00Z")
        #expect(CertificateValidity.iso8601(1_800_000_000) == "2027-01-15T08:00:00Z")
        #expect(CertificateValidity(file: "a.crt", notValidAfter: 1_709_210_096).expires == "2024-02-29T12:34:56Z")
    }

    @Test("valid beyond two weeks, then whole days left, then expired")
    func standing() {
        let validity = CertificateValidity(file: "/etc/jmp-bridge/tls.crt", notValidAfter: 1_800_000_000)
        let expiry = validity.notValidAfter
        #expect(validity.standing(now: expiry - 14 * Self.day) == .valid)
        #expect(validity.problem(now: expiry - 14 * Self.day) == nil)
        #expect(validity.standing(now: expiry - 14 * Self.day + 1) == .expiresSoon(days: 13))
        #expect(validity.standing(now: expiry - 3 * Self.day - 3600) == .expiresSoon(days: 3))
        #expect(
            validity.problem(now: expiry - 3 * Self.day - 3600)
                == "TLS certificate /etc/jmp-bridge/tls.crt expires in 3 days, at 2027-01-15T08:00:00Z; "
                + "renew it, then reload (SIGHUP)"
        )
        #expect(validity.problem(now: expiry - Self.day - 1)?.contains("expires in 1 day,") == true)
        #expect(validity.problem(now: expiry - 60)?.contains("expires in less than a day,") == true)
        #expect(validity.standing(now: expiry) == .expired)
        #expect(
            validity.problem(now: expiry + Self.day)
                == "TLS certificate /etc/jmp-bridge/tls.crt expired at 2027-01-15T08:00:00Z: clients refuse it; "
                + "renew it, then reload (SIGHUP)"
        )
    }

    @Test("a certificate about to expire is logged as a warning, an expired one as an error")
    func logLevel() {
        #expect(CertificateValidity.Standing.expiresSoon(days: 3).logLevel == .warning)
        #expect(CertificateValidity.Standing.expired.logLevel == .error)
    }

    @Test("a CA file's expiry says what stops being trusted and what to do, for a client-ca and the gateway's")
    func authorities() {
        let client = CertificateValidity(file: "/etc/ca.pem", notValidAfter: 1_800_000_000, kind: .clientAuthority)
        #expect(client.problem(now: client.notValidAfter - 15 * Self.day) == nil)
        #expect(
            client.problem(now: client.notValidAfter - 3 * Self.day - 60)
                == "CA certificate in /etc/ca.pem (client-ca) expires in 3 days, at 2027-01-15T08:00:00Z: from then on "
                + "the client certificates it signed are refused; put the renewed CA in the file, then reload (SIGHUP)"
        )
        let upstream = CertificateValidity(file: "/etc/ca.pem", notValidAfter: 1_800_000_000, kind: .upstreamAuthority)
        #expect(
            upstream.problem(now: upstream.notValidAfter + 1)
                == "CA certificate in /etc/ca.pem expired at 2027-01-15T08:00:00Z: the gateway refuses the server "
                + "certificates it signed; put the renewed CA in the file, then reload (SIGHUP)"
        )
        #expect(CertificateValidity(authorities: [], file: "/etc/empty.pem", kind: .clientAuthority) == nil)
    }

    @Test("the status line names a CA file from two weeks before its expiry, and once it has expired")
    func authorityNotes() {
        let authority = CertificateValidity(file: "/etc/ca.pem", notValidAfter: 1_800_000_000, kind: .clientAuthority)
        #expect(authority.authorityNote(now: authority.notValidAfter - 15 * Self.day) == nil)
        #expect(
            authority.authorityNote(now: authority.notValidAfter - Self.day - 60)
                == "CA certificate in /etc/ca.pem expires in 1 day"
        )
        #expect(
            authority.authorityNote(now: authority.notValidAfter)
                == "CA certificate in /etc/ca.pem EXPIRED at 2027-01-15T08:00:00Z"
        )
    }

    @Test("check --files locates each warning at the listener's tls key; a valid certificate has none")
    func locatedWarnings() {
        var loaded = LoadedFiles()
        let expiry: Int64 = 1_800_000_000
        loaded.certificates = [
            (
                ConfigurationError(file: "/etc/jmp-bridge.yaml", line: 3, key: "listen.tls", ""),
                CertificateValidity(file: "old.crt", notValidAfter: expiry)
            ),
            (
                ConfigurationError(file: "/etc/jmp-bridge.yaml", line: 9, key: "gateway.listen.tls", ""),
                CertificateValidity(file: "new.crt", notValidAfter: expiry + 365 * Self.day)
            ),
        ]
        #expect(loaded.warnings(now: expiry - 100 * Self.day).isEmpty)
        #expect(
            loaded.warnings(now: expiry + 1) == [
                "/etc/jmp-bridge.yaml:3: listen.tls: TLS certificate old.crt expired at 2027-01-15T08:00:00Z: "
                    + "clients refuse it; renew it, then reload (SIGHUP)"
            ]
        )
    }

    @Test(
        "the watch logs a certificate about to expire as a warning, an expired one as an error, and checks again on its own"
    )
    func watch() async throws {
        let directory = try makeTemporaryDirectory()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3",
            "-subj", "/CN=localhost", "-keyout", "\(directory)/tls.key", "-out", "\(directory)/tls.crt",
        ]
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)

        let log = CapturedLog()
        let environment = BridgeContext(
            routes: RouteTable(routes: [:], defaultRoute: nil),
            limits: Limits(),
            linger: .seconds(1),
            statistics: BridgeStatistics(),
            logger: log.logger()
        )
        let files = TLSFiles(certificate: "\(directory)/tls.crt", key: "\(directory)/tls.key")
        let tls = try TLSContextBox(files: files, listener: "tcp:127.0.0.1:0")
        environment.tlsContexts.withLockedValue { $0.append(tls) }
        // openssl's -days 3 counts from now.
        let expiry = tls.validity.notValidAfter
        #expect((3 * Self.day - 60...3 * Self.day).contains(expiry - CertificateValidity.now()))

        let watch = CertificateWatch(environment: environment, interval: .seconds(86_400), logger: log.logger())
        #expect(watch.check(now: expiry - 2 * Self.day - 3600).count == 1)
        #expect(watch.check(now: expiry - 30 * Self.day).isEmpty)
        #expect(watch.check(now: expiry).count == 1)
        let lines = log.all
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("warning TLS certificate \(directory)/tls.crt expires in 2 days, at ") == true)
        #expect(lines.first?.contains("listener=tcp:127.0.0.1:0") == true)
        #expect(lines.last?.hasPrefix("error TLS certificate \(directory)/tls.crt expired at ") == true)

        // run() does not check at once (start and reload do): a line in a new log comes from its timer.
        let periodic = CapturedLog()
        let timed = CertificateWatch(environment: environment, interval: .milliseconds(20), logger: periodic.logger())
        let running = Task { await timed.run() }
        await periodic.waitForLine(containing: "TLS certificate \(directory)/tls.crt expires in ")
        running.cancel()
        await running.value
    }
}
