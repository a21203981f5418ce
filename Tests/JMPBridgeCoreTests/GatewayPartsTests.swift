import NIOCore
import NIOHPACK
import NIOSSL
import Testing

@testable import JMPGateway

/// The gateway's pure parts: endpoint parsing, token expiry, the token book, a lost call's reason.
@Suite struct GatewayPartsTests {
    @Test func aLostCallSaysHowItsConnectionEnded() {
        #expect(UpstreamConnectionLost(nil).description == "the connection closed")
        #expect(UpstreamConnectionLost(NIOSSLError.uncleanShutdown).description == "the server closed the connection")
        #expect(
            UpstreamConnectionLost(ChannelError.ioOnClosedChannel).description
                == "the connection failed: \(ChannelError.ioOnClosedChannel)"
        )
    }

    @Test func parsesTheTargetsJumpstarterUses() {
        #expect(
            UpstreamEndpoint(parsing: "router.example.com:8083")
                == UpstreamEndpoint(host: "router.example.com", port: 8083)
        )
        #expect(
            UpstreamEndpoint(parsing: "dns:///grpc.example.com:443")
                == UpstreamEndpoint(host: "grpc.example.com", port: 443)
        )
        #expect(
            UpstreamEndpoint(parsing: "dns:grpc.example.com:9") == UpstreamEndpoint(host: "grpc.example.com", port: 9)
        )
        #expect(UpstreamEndpoint(parsing: "[::1]:8443") == UpstreamEndpoint(host: "::1", port: 8443))
        #expect(
            UpstreamEndpoint(parsing: "router.example.com") == UpstreamEndpoint(host: "router.example.com", port: 443)
        )
        #expect(UpstreamEndpoint(parsing: "[::1]:8443")?.authority == "[::1]:8443")
        for bad in ["", "host:0", "host:70000", "host:x", "::1:80", "unix:/run/x.sock", "a b:1", "[::1", "dns:///"] {
            #expect(UpstreamEndpoint(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func tokenExpiryComesFromTheExpClaimCappedAtADay() {
        // {"alg":"HS256"} . {"sub":"x","exp":1000} . sig
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjoxMDAwfQ.c2ln"
        #expect(TokenExpiry.expClaim(token) == 1000)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        #expect(TokenExpiry.deadline(of: token, now: now, wallClock: 900) == now + .seconds(100))
        #expect(TokenExpiry.deadline(of: token, now: now, wallClock: 1000) == now)
        #expect(TokenExpiry.deadline(of: token, now: now, wallClock: -1_000_000) == now + .hours(24))
        #expect(TokenExpiry.deadline(of: "opaque", now: now, wallClock: 0) == now + .hours(24))
        #expect(TokenExpiry.expClaim("a.!!!.c") == nil)
        // {"sub":"exp","exp":1000}: the text "exp" as a value first, the key after it.
        #expect(TokenExpiry.expClaim("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJleHAiLCJleHAiOjEwMDB9.c2ln") == 1000)
        // {"sub":"x",\n\t"exp" :\r\n 1000}: any JSON whitespace around the colon.
        #expect(TokenExpiry.expClaim("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwKCSJleHAiIDoNCiAxMDAwfQ.c2ln") == 1000)
    }

    @Test func aTokenLivesItsIssuedLifetimeWhateverTheHostsClockSays() {
        // {"sub":"x","iat":1000,"exp":2800}: issued for 30 minutes.
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwiaWF0IjoxMDAwLCJleHAiOjI4MDB9.c2ln"
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        // The host's clock agrees with the controller's: 30 minutes.
        #expect(TokenExpiry.deadline(of: token, now: now, wallClock: 1000) == now + .seconds(1800))
        // An hour fast: exp is past by this clock, but the router (by its own) takes the token.
        #expect(TokenExpiry.deadline(of: token, now: now, wallClock: 4600) == now + .seconds(1800))
        // Behind: the longer of the two, as before.
        #expect(TokenExpiry.deadline(of: token, now: now, wallClock: 0) == now + .seconds(2800))
    }

    @Test func aTokenIsHonouredOnceAndNotAfterItExpired() {
        let book = RouterTokenBook()
        let router = UpstreamEndpoint(host: "r", port: 1)
        book.record("t1", RouterGrant(router: router, lease: "l", exporter: "ns/e", expires: .now() + .seconds(60)))
        book.record("t2", RouterGrant(router: router, lease: "l", exporter: "ns/e", expires: .now() - .seconds(1)))
        #expect(book.pendingByLease() == ["l": 1])
        #expect(book.take("t1")?.router == router)
        #expect(book.take("t1") == nil)
        #expect(book.take("t2") == nil)
        #expect(book.take("never") == nil)
    }

    @Test func theBookIsBounded() {
        let book = RouterTokenBook()
        let router = UpstreamEndpoint(host: "r", port: 1)
        for index in 0...RouterTokenBook.capacity {
            book.record(
                "t\(index)",
                RouterGrant(router: router, lease: nil, exporter: nil, expires: .now() + .seconds(Int64(60 + index)))
            )
        }
        #expect(book.pendingByLease()["-"] == RouterTokenBook.capacity)
        #expect(book.take("t0") == nil)  // the one closest to expiry gave way
        #expect(book.take("t\(RouterTokenBook.capacity)") != nil)
    }

    @Test func headersForTheUpstreamKeepEverythingButAuthorityAndScheme() {
        let headers = HPACKHeaders([
            (":method", "POST"), (":scheme", "https"), (":path", "/a/b"), (":authority", "gw:1"),
            ("content-type", "application/grpc"), ("te", "trailers"), ("authorization", "Bearer x"),
            ("x-custom-bin", "AAEC"), ("grpc-timeout", "5S"),
        ])
        let out = GatewayStreamHandler.upstreamHeaders(headers, authority: "ctl:443", scheme: "http")
        #expect(
            out.map { "\($0.name)=\($0.value)" } == [
                ":method=POST", ":scheme=http", ":path=/a/b", ":authority=ctl:443", "content-type=application/grpc",
                "te=trailers", "authorization=Bearer x", "x-custom-bin=AAEC", "grpc-timeout=5S",
            ]
        )
        #expect(GatewayStreamHandler.bearerToken(out) == "x")
        #expect(GatewayStreamHandler.statusName("14") == "UNAVAILABLE")
        #expect(GatewayStreamHandler.statusName("99") == "status-99")
    }
}
