import Foundation
import NIOHPACK
import Testing

@testable import JMPProtocol

/// The headers a well-behaved gRPC client (grpcio, grpc-swift) sends for the Stream method.
private func requestHeaders(
    replacing replacements: [(String, String?)] = [],
    adding extra: [(String, String)] = []
) -> HPACKHeaders {
    var fields: [(String, String)] = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/jumpstarter.v1.RouterService/Stream"),
        (":authority", "bridge.example:8083"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "grpc-python/1.66.1 grpc-c/43.0.0 (linux; chttp2)"),
    ]
    for (name, value) in replacements {
        if let index = fields.firstIndex(where: { $0.0 == name }) {
            if let value { fields[index].1 = value } else { fields.remove(at: index) }
        } else if let value {
            fields.append((name, value))
        }
    }
    return HPACKHeaders(fields + extra)
}

private func parsed(_ headers: HPACKHeaders) -> GRPCRequestHead? {
    if case .success(let head) = GRPCRequestHead.parse(headers) { return head }
    return nil
}

private func refusal(_ headers: HPACKHeaders) -> GRPCRequestRejection? {
    if case .failure(let rejection) = GRPCRequestHead.parse(headers) { return rejection }
    return nil
}

/// The gRPC status code a request is refused with, if it is refused with one.
private func statusCode(_ headers: HPACKHeaders) -> GRPCStatus.Code? {
    if case .grpc(let status) = refusal(headers) { return status.code }
    return nil
}

/// The HTTP status a request is refused with, if it is refused as not gRPC at all.
private func httpStatus(_ headers: HPACKHeaders) -> Int? {
    if case .http(let status, _) = refusal(headers) { return status }
    return nil
}

@Suite("gRPC request and response headers")
struct GRPCHeadersTests {
    // MARK: - Accepted requests

    @Test("a plain request is accepted, with no route and no deadline")
    func plainRequest() throws {
        let head = try #require(parsed(requestHeaders()))
        #expect(head.path == "/jumpstarter.v1.RouterService/Stream")
        #expect(head.path == RouterService.streamPath)
        #expect(head.route == nil)
        #expect(head.timeoutNanoseconds == nil)
        #expect(head.authorization == nil)
        #expect(head.userAgent == "grpc-python/1.66.1 grpc-c/43.0.0 (linux; chttp2)")
    }

    @Test("a request with route, credentials and deadline is accepted")
    func fullRequest() throws {
        let headers = requestHeaders(
            replacing: [("content-type", "application/grpc+proto")],
            adding: [
                ("grpc-timeout", "5S"),
                ("jmp-route", "uart0.console_A-1"),
                ("authorization", "Bearer secret-token"),
                ("grpc-encoding", "identity"),
                ("grpc-accept-encoding", "identity,deflate,gzip"),
            ]
        )
        let head = try #require(parsed(headers))
        #expect(head.route == "uart0.console_A-1")
        #expect(head.authorization == "Bearer secret-token")
        #expect(!head.authorizationRepeated)
        #expect(head.timeoutNanoseconds == 5_000_000_000)
    }

    @Test("a second authorization value is noted, for the verifier to refuse")
    func repeatedAuthorization() throws {
        let headers = requestHeaders(
            adding: [("authorization", "Bearer first-token"), ("authorization", "Bearer second-token")]
        )
        let head = try #require(parsed(headers))
        #expect(head.authorization == "Bearer first-token")
        #expect(head.authorizationRepeated)
    }

    @Test(
        "gRPC content types are accepted",
        arguments: [
            "application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8",
            "Application/GRPC", "application/grpc+proto; charset=utf-8",
        ]
    )
    func contentTypes(contentType: String) {
        #expect(parsed(requestHeaders(replacing: [("content-type", contentType)])) != nil)
    }

    @Test("te: trailers is not required")
    func withoutTE() {
        #expect(parsed(requestHeaders(replacing: [("te", nil)])) != nil)
    }

    @Test("route names at the limits of the syntax are accepted")
    func routeNameLimits() {
        for name in ["a", String(repeating: "x", count: 64), "A-Z_a.z-0.9", ".", "..", "-"] {
            #expect(parsed(requestHeaders(adding: [("jmp-route", name)]))?.route == name, "\(name)")
        }
    }

    // MARK: - Refused requests

    @Test("a method other than POST is not gRPC: HTTP 405", arguments: ["GET", "PUT", "post", "HEAD"])
    func notPost(method: String) {
        #expect(httpStatus(requestHeaders(replacing: [(":method", method)])) == 405)
    }

    @Test("a missing :method is refused with HTTP 405")
    func missingMethod() {
        #expect(httpStatus(requestHeaders(replacing: [(":method", nil)])) == 405)
    }

    @Test(
        "a content type that is not gRPC: HTTP 415",
        arguments: [
            "application/json", "text/plain", "application/grpc-web", "application/grpcx", "application/grp", "",
        ]
    )
    func wrongContentType(contentType: String) {
        #expect(httpStatus(requestHeaders(replacing: [("content-type", contentType)])) == 415)
    }

    @Test("a missing content type: HTTP 415")
    func missingContentType() {
        #expect(httpStatus(requestHeaders(replacing: [("content-type", nil)])) == 415)
    }

    @Test(
        "an unknown method is UNIMPLEMENTED",
        arguments: [
            "/jumpstarter.v1.RouterService/Other", "/jumpstarter.v1.ControllerService/Listen",
            "/jumpstarter.v1.RouterService/Stream/", "/jumpstarter.v1.RouterService/stream", "/", "",
        ]
    )
    func unknownPath(path: String) {
        #expect(statusCode(requestHeaders(replacing: [(":path", path)])) == .unimplemented)
    }

    @Test("a missing :path is UNIMPLEMENTED")
    func missingPath() {
        #expect(statusCode(requestHeaders(replacing: [(":path", nil)])) == .unimplemented)
    }

    @Test("a compressed request is UNIMPLEMENTED", arguments: ["gzip", "deflate", "snappy"])
    func encoding(encoding: String) throws {
        let rejection = try #require(refusal(requestHeaders(adding: [("grpc-encoding", encoding)])))
        guard case .grpc(let status) = rejection else {
            Issue.record("expected a gRPC status, got \(rejection)")
            return
        }
        #expect(status.code == .unimplemented)
        #expect(status.message.contains(encoding))
    }

    @Test(
        "a malformed grpc-timeout is INVALID_ARGUMENT",
        arguments: ["", "5", "S", "5s", "5X", "-5S", "5 S", " 5S", "123456789S", "1.5S", "0x5S", "五S"]
    )
    func badTimeout(value: String) {
        #expect(statusCode(requestHeaders(adding: [("grpc-timeout", value)])) == .invalidArgument)
    }

    @Test(
        "an invalid route name is NOT_FOUND",
        arguments: [
            "../etc", "/run/jumpstarter/exporter.sock", "a/b", "a b", "route\u{0}", "caf\u{E9}",
            String(repeating: "x", count: 65), "a:b", "%2e%2e",
        ]
    )
    func invalidRoute(name: String) throws {
        let rejection = try #require(refusal(requestHeaders(adding: [("jmp-route", name)])))
        guard case .grpc(let status) = rejection else {
            Issue.record("expected a gRPC status, got \(rejection)")
            return
        }
        #expect(status.code == .notFound)
        // The message never carries control characters.
        #expect(!status.message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
    }

    /// A `jmp-route` header that is present but names no valid route must fail the stream; it
    /// must not fall back to the default route as if the header were absent (docs/WIRE.md, Metadata: absent ⇒
    /// the default route; names are `[A-Za-z0-9._-]{1,64}`).
    @Test("an empty or comma-only jmp-route is NOT_FOUND, not the default route", arguments: ["", " ", ",", " , "])
    func emptyRoute(value: String) {
        let result = GRPCRequestHead.parse(requestHeaders(adding: [("jmp-route", value)]))
        if case .success(let head) = result {
            Issue.record("jmp-route \"\(value)\" was accepted as route \(String(describing: head.route))")
        }
        #expect(statusCode(requestHeaders(adding: [("jmp-route", value)])) == .notFound)
    }

    @Test("a route name with a trailing comma is not silently trimmed")
    func routeWithTrailingComma() {
        let result = GRPCRequestHead.parse(requestHeaders(adding: [("jmp-route", "session,")]))
        if case .success(let head) = result {
            Issue.record("jmp-route \"session,\" was accepted as route \(String(describing: head.route))")
        }
    }

    @Test("two jmp-route values are refused")
    func twoRoutes() {
        #expect(
            statusCode(requestHeaders(adding: [("jmp-route", "session"), ("jmp-route", "console")]))
                == .invalidArgument
        )
        // The same route twice is still ambiguous input.
        #expect(
            statusCode(requestHeaders(adding: [("jmp-route", "session"), ("jmp-route", "session")]))
                == .invalidArgument
        )
        // Two values folded into one field, as HTTP allows (or one invalid name): refused either way.
        let folded = statusCode(requestHeaders(adding: [("jmp-route", "session,console")]))
        #expect(folded == .invalidArgument || folded == .notFound)
    }

    @Test("checks run in the documented order")
    func checkOrder() {
        // Not POST wins over everything else.
        #expect(
            httpStatus(
                requestHeaders(
                    replacing: [(":method", "GET"), ("content-type", "text/plain"), (":path", "/x")],
                    adding: [("grpc-encoding", "gzip")]
                )
            ) == 405
        )
        // Then the content type.
        #expect(httpStatus(requestHeaders(replacing: [("content-type", "text/plain"), (":path", "/x")])) == 415)
        // Then the path.
        #expect(
            statusCode(requestHeaders(replacing: [(":path", "/x")], adding: [("grpc-encoding", "gzip")]))
                == .unimplemented
        )
        // Then the encoding, before the timeout and the route.
        let encodingFirst = refusal(
            requestHeaders(adding: [("grpc-encoding", "gzip"), ("grpc-timeout", "x"), ("jmp-route", "../x")])
        )
        if case .grpc(let status) = encodingFirst {
            #expect(status.code == .unimplemented)
        } else {
            Issue.record("expected UNIMPLEMENTED, got \(String(describing: encodingFirst))")
        }
        // Then the timeout, before the route.
        #expect(
            statusCode(requestHeaders(adding: [("grpc-timeout", "x"), ("jmp-route", "../x")])) == .invalidArgument
        )
    }

    @Test("values in messages are quoted, cleaned and shortened")
    func printableValues() throws {
        let path = "/evil\npath\u{7F}" + String(repeating: "p", count: 200)
        let rejection = try #require(refusal(requestHeaders(replacing: [(":path", path)])))
        guard case .grpc(let status) = rejection else {
            Issue.record("expected a gRPC status")
            return
        }
        #expect(status.message.hasPrefix("unknown method \"/evil?path?ppp"))
        #expect(status.message.hasSuffix("…\""))
        #expect(status.message.count < 120)
        #expect(GRPCRequestHead.printable("abc") == "\"abc\"")
        #expect(GRPCRequestHead.printable("a\tb\r\n") == "\"a?b??\"")
    }

    // MARK: - grpc-timeout

    @Test(
        "grpc-timeout units",
        arguments: [
            ("1H", Int64(3_600_000_000_000)), ("2M", 120_000_000_000), ("3S", 3_000_000_000), ("4m", 4_000_000),
            ("5u", 5_000), ("6n", 6), ("0n", 0), ("00000001S", 1_000_000_000), ("99999999n", 99_999_999),
            ("99999999S", 99_999_999_000_000_000), ("99999999M", 5_999_999_940_000_000_000), ("99999999H", Int64.max),
        ]
    )
    func timeoutUnits(value: String, nanoseconds: Int64) {
        #expect(GRPCRequestHead.parseTimeout(value) == nanoseconds)
    }

    @Test(
        "malformed grpc-timeout values",
        arguments: ["", "1", "H", "1h", "1s", "1ms", "+1S", "1 S", "123456789n", "١S"]
    )
    func malformedTimeout(value: String) {
        #expect(GRPCRequestHead.parseTimeout(value) == nil)
    }

    // MARK: - GRPCStatus

    @Test("percent-encoding of grpc-message")
    func percentEncoding() {
        func encoded(_ message: String) -> String { GRPCStatus(.unavailable, message).percentEncodedMessage }
        #expect(encoded("") == "")
        #expect(encoded("plain ASCII text: (ok) ~!") == "plain ASCII text: (ok) ~!")
        #expect(encoded("100%") == "100%25")
        #expect(encoded("%25") == "%2525")
        #expect(encoded("caf\u{E9}") == "caf%C3%A9")
        #expect(encoded("\u{1F600}") == "%F0%9F%98%80")
        #expect(encoded("line\nbreak\ttab\r") == "line%0Abreak%09tab%0D")
        #expect(encoded("\u{0}\u{1F}\u{7F}") == "%00%1F%7F")
        #expect(encoded(" ") == " ")
    }

    @Test("percent-encoding round-trips through a decoder")
    func percentEncodingRoundTrip() {
        let message = "target unix:/run/jumpstarter/exporter.sock refused: Connection refused (100% sure) \u{E9}\n"
        let encoded = GRPCStatus(.unavailable, message).percentEncodedMessage
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
        #expect(encoded.removingPercentEncoding == message)
    }

    @Test("status descriptions and codes")
    func statusDescriptions() {
        #expect(GRPCStatus(.notFound, "no route named 'x'").description == "NOT_FOUND: no route named 'x'")
        #expect(GRPCStatus.ok.description == "OK")
        #expect(GRPCStatus.ok.code.rawValue == 0)
        let expected: [GRPCStatus.Code: (Int, String)] = [
            .cancelled: (1, "CANCELLED"), .unknown: (2, "UNKNOWN"), .invalidArgument: (3, "INVALID_ARGUMENT"),
            .deadlineExceeded: (4, "DEADLINE_EXCEEDED"), .notFound: (5, "NOT_FOUND"),
            .permissionDenied: (7, "PERMISSION_DENIED"), .resourceExhausted: (8, "RESOURCE_EXHAUSTED"),
            .failedPrecondition: (9, "FAILED_PRECONDITION"), .aborted: (10, "ABORTED"),
            .unimplemented: (12, "UNIMPLEMENTED"), .internal: (13, "INTERNAL"), .unavailable: (14, "UNAVAILABLE"),
            .unauthenticated: (16, "UNAUTHENTICATED"), .ok: (0, "OK"),
        ]
        #expect(expected.count == GRPCStatus.Code.allCases.count)
        for (code, (value, name)) in expected {
            #expect(code.rawValue == value)
            #expect(code.name == name)
        }
    }

    // MARK: - Response headers

    @Test("initial response headers")
    func initialHeaders() {
        let headers = GRPCResponseHeaders.initial()
        #expect(headers.first(name: ":status") == "200")
        #expect(headers.first(name: "content-type") == "application/grpc")
        #expect(headers.first?.name == ":status")
    }

    @Test("trailers of a successful response carry only grpc-status 0")
    func okTrailers() {
        let trailers = GRPCResponseHeaders.trailers(.ok)
        #expect(trailers.count == 1)
        #expect(trailers.first(name: "grpc-status") == "0")
        #expect(!trailers.contains(name: "grpc-message"))
        #expect(!trailers.contains(name: ":status"))
    }

    @Test("trailers with a message percent-encode it")
    func trailersWithMessage() {
        let trailers = GRPCResponseHeaders.trailers(GRPCStatus(.resourceExhausted, "message of 5 MiB over 4 MiB: 125%"))
        #expect(trailers.first(name: "grpc-status") == "8")
        #expect(trailers.first(name: "grpc-message") == "message of 5 MiB over 4 MiB: 125%25")
        #expect(!trailers.contains(name: ":status"))
    }

    @Test("a trailers-only response starts with :status 200 and carries the status")
    func trailersOnly() {
        let headers = GRPCResponseHeaders.trailersOnly(GRPCStatus(.notFound, "no route named 'caf\u{E9}'"))
        #expect(headers.first?.name == ":status")
        #expect(headers.first(name: ":status") == "200")
        #expect(headers.first(name: "content-type") == "application/grpc")
        #expect(headers.first(name: "grpc-status") == "5")
        #expect(headers.first(name: "grpc-message") == "no route named 'caf%C3%A9'")
        #expect(!headers.contains(name: "grpc-accept-encoding"))
        // Each header exactly once.
        for name in [":status", "content-type", "grpc-status", "grpc-message"] {
            #expect(headers[name].count == 1, "\(name)")
        }
    }

    @Test("an UNIMPLEMENTED trailers-only response names the accepted encodings")
    func trailersOnlyUnimplemented() {
        let headers = GRPCResponseHeaders.trailersOnly(GRPCStatus(.unimplemented, "grpc-encoding \"gzip\""))
        #expect(headers.first(name: "grpc-status") == "12")
        #expect(headers.first(name: "grpc-accept-encoding") == "identity")
        #expect(headers.first(name: "grpc-message") == "grpc-encoding \"gzip\"")
    }

    @Test("a trailers-only response without a message has no grpc-message")
    func trailersOnlyWithoutMessage() {
        let headers = GRPCResponseHeaders.trailersOnly(GRPCStatus(.unavailable))
        #expect(headers.first(name: "grpc-status") == "14")
        #expect(!headers.contains(name: "grpc-message"))
    }

    @Test("a plain HTTP error")
    func httpError() {
        let headers = GRPCResponseHeaders.httpError(status: 415)
        #expect(headers.count == 1)
        #expect(headers.first(name: ":status") == "415")
    }
}
