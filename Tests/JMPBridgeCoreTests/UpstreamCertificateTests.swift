import JMPTLS
import NIOCore
import NIOSSL
import Testing

@testable import JMPGateway

/// The certificates the gateway's upstream servers present: the wording of their expiry, which
/// connection's certificate `status` shows, how often the log warns, and what a certificate
/// refused for its dates is called. (A running gateway in front of a controller with such
/// certificates: Tests/Interop/test_certificates.py.)
@Suite("Upstream certificates", .timeLimit(.minutes(1)))
struct UpstreamCertificateTests {
    private static let day: Int64 = 86_400
    private static let expiry: Int64 = 1_800_000_000  // 2027-01-15T08:00:00Z
    private static let controller = UpstreamEndpoint(host: "jumpstarter.example.com", port: 443)
    private static let router = UpstreamEndpoint(host: "router.example.com", port: 443)

    private static func status(
        _ endpoint: UpstreamEndpoint,
        notValidAfter: Int64?,
        seen: NIODeadline = .now()
    ) -> UpstreamConnectionStatus {
        UpstreamConnectionStatus(
            endpoint: endpoint,
            state: .ready,
            streams: 0,
            connects: 1,
            failures: 0,
            lastError: nil,
            certificate: notValidAfter.map { .init(notValidAfter: $0, seen: seen) }
        )
    }

    @Test("the log's and the status line's words, from two weeks before and once expired")
    func wording() {
        let certificate = UpstreamCertificate(endpoint: Self.controller, role: "controller", notValidAfter: Self.expiry)
        #expect(certificate.expires == "2027-01-15T08:00:00Z")
        #expect(certificate.problem(now: Self.expiry - 14 * Self.day) == nil)
        #expect(certificate.note(now: Self.expiry - 14 * Self.day) == nil)
        #expect(
            certificate.problem(now: Self.expiry - 3 * Self.day - 60)
                == "the controller's TLS certificate (jumpstarter.example.com:443) expires in 3 days, at "
                + "2027-01-15T08:00:00Z: from then on the gateway refuses it and every exporter's calls through it "
                + "fail; the cluster's administrators must renew it"
        )
        #expect(
            certificate.note(now: Self.expiry - 60)
                == "TLS certificate of controller jumpstarter.example.com:443 expires in less than a day"
        )
        #expect(
            certificate.problem(now: Self.expiry + 1)
                == "the controller's TLS certificate (jumpstarter.example.com:443) expired at 2027-01-15T08:00:00Z: "
                + "connections open before go on, new ones fail; the cluster's administrators must renew it"
        )
        #expect(
            certificate.note(now: Self.expiry + 1)
                == "TLS certificate of controller jumpstarter.example.com:443 EXPIRED at 2027-01-15T08:00:00Z"
        )
    }

    @Test("a server's certificate is the one its latest handshake presented, on whichever event loop")
    func latest() {
        let book = UpstreamStatusBook(controller: Self.controller, logger: CapturedLog().logger())
        let start = NIODeadline.now()
        let now = Self.expiry - 100 * Self.day
        book.report("loop1/controller", Self.status(Self.controller, notValidAfter: Self.expiry, seen: start), now: now)
        // Renewed: a later handshake on another loop sees the new one; the old connection goes on.
        let renewed = Self.expiry + 90 * Self.day
        book.report(
            "loop2/controller",
            Self.status(Self.controller, notValidAfter: renewed, seen: start + .seconds(5)),
            now: now
        )
        book.report("loop1/router", Self.status(Self.router, notValidAfter: nil), now: now)
        #expect(
            book.certificates() == [
                UpstreamCertificate(endpoint: Self.controller, role: "controller", notValidAfter: renewed)
            ]
        )
        book.report("loop2/controller", nil, now: now)
        #expect(book.certificates().map(\.notValidAfter) == [Self.expiry])
    }

    @Test("a certificate about to expire is warned of when first seen, at most daily after, and at each daily check")
    func warnings() {
        let log = CapturedLog()
        let book = UpstreamStatusBook(controller: Self.controller, logger: log.logger())
        let now = Self.expiry - 3 * Self.day - 60
        let first = NIODeadline.now()
        book.report("loop1/controller", Self.status(Self.controller, notValidAfter: Self.expiry, seen: first), now: now)
        #expect(log.all.count == 1)
        #expect(
            log.all.first?.hasPrefix(
                "warning gateway: the controller's TLS certificate (jumpstarter.example.com:443) expires in 3 days"
            ) == true
        )
        #expect(log.all.first?.contains("upstream=jumpstarter.example.com:443") == true)
        // A stream opening on it reports the same certificate: nothing new.
        var busy = Self.status(Self.controller, notValidAfter: Self.expiry, seen: first)
        busy.streams = 1
        book.report("loop1/controller", busy, now: now + 10)
        // The other loop's connection sees it within the day: nothing new.
        let second = first + .seconds(1)
        book.report(
            "loop2/controller",
            Self.status(Self.controller, notValidAfter: Self.expiry, seen: second),
            now: now + 60
        )
        #expect(log.all.count == 1)
        // A day later a new handshake warns again.
        book.report(
            "loop2/controller",
            Self.status(Self.controller, notValidAfter: Self.expiry, seen: second + .seconds(1)),
            now: now + Self.day
        )
        #expect(log.all.count == 2)
        // The daily check warns whatever was said before, an expired one as an error.
        #expect(book.checkCertificates(now: now + Self.day + 1).count == 1)
        #expect(book.checkCertificates(now: Self.expiry + 1).count == 1)
        #expect(log.all.count == 4)
        #expect(log.all.last?.hasPrefix("error gateway: the controller's TLS certificate") == true)
        // A renewed certificate with a year left: no warning, and the check is quiet.
        book.report(
            "loop1/controller",
            Self.status(Self.controller, notValidAfter: Self.expiry + 365 * Self.day, seen: second + .seconds(2)),
            now: Self.expiry + 2
        )
        #expect(book.checkCertificates(now: Self.expiry + 3).isEmpty)
        #expect(log.all.count == 4)
    }

    @Test("a certificate refused for its dates says which date, else the CA is blamed as before")
    func refusedDates() {
        // (NIOSSL's CERTIFICATE_VERIFY_FAILED cannot be made here; any handshake error is kept.)
        let failure = NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake]))
        let refused = RefusedServerCertificate(
            error: failure,
            notValidBefore: Self.expiry - 90 * Self.day,
            notValidAfter: Self.expiry
        )
        let trust = UpstreamTrust.caFile("/etc/jmp-bridge/cluster-ca.pem")
        #expect(
            UpstreamConnection.describe(refused, endpoint: Self.controller, trust: trust, now: Self.expiry + Self.day)
                == "TLS: the server's certificate expired at 2027-01-15T08:00:00Z; the cluster's administrators "
                + "must renew it"
        )
        #expect(
            UpstreamConnection.describe(
                refused,
                endpoint: Self.controller,
                trust: trust,
                now: Self.expiry - 91 * Self.day
            )
                == "TLS: the server's certificate is valid only from 2026-10-17T08:00:00Z, and this host's clock says "
                + "2026-10-16T08:00:00Z: check the clock (timedatectl)"
        )
        // Valid dates: NIOSSL's error is described as it would be without them.
        #expect(refused.reason(now: Self.expiry - Self.day) == nil)
        #expect(
            UpstreamConnection.describe(refused, endpoint: Self.controller, trust: trust, now: Self.expiry - Self.day)
                == "TLS: the server closed the connection during the handshake (does it speak TLS on this port?)"
        )
    }
}
