import NIOHPACK

/// The parts of a gRPC request's HEADERS frame that the bridge acts on.
public struct GRPCRequestHead: Sendable, Equatable {
    /// The `:path`, e.g. `/jumpstarter.v1.RouterService/Stream`.
    public var path: String
    /// The deadline the client set with `grpc-timeout`, in nanoseconds.
    public var timeoutNanoseconds: Int64?
    /// The route the client asked for with `jmp-route`; nil selects the default route.
    public var route: String?
    /// The `authorization` value, if any (never logged); the first, if there are several.
    public var authorization: String?
    /// Whether the request carries more than one `authorization` value, which Jumpstarter's router
    /// refuses (a token must not be picked from several).
    public var authorizationRepeated = false
    /// The `user-agent`, for logs.
    public var userAgent: String?
    /// `jmp-attach: ro`: a console attachment that only watches.
    public var readOnly = false

    /// Validates request headers as the gRPC over HTTP/2 protocol requires and extracts what the
    /// bridge needs. Checks, in order: method POST, `content-type` application/grpc (else HTTP
    /// 415), `:path` is the Stream method (else UNIMPLEMENTED), `grpc-encoding` identity (else
    /// UNIMPLEMENTED), a well-formed `grpc-timeout`, and a well-formed `jmp-route` (else NOT_FOUND).
    public static func parse(_ headers: HPACKHeaders) -> Result<GRPCRequestHead, GRPCRequestRejection> {
        guard headers.first(name: ":method") == "POST" else {
            return .failure(.http(status: 405, reason: "gRPC requires POST"))
        }
        guard let contentType = headers.first(name: "content-type"), Self.isGRPCContentType(contentType) else {
            return .failure(.http(status: 415, reason: "content-type must be application/grpc"))
        }
        let path = headers.first(name: ":path") ?? ""
        guard path == RouterService.streamPath else {
            return .failure(.grpc(GRPCStatus(.unimplemented, "unknown method \(Self.printable(path))")))
        }
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            return .failure(
                .grpc(
                    GRPCStatus(
                        .unimplemented,
                        "grpc-encoding \(Self.printable(encoding)) is not supported (identity only)"
                    )
                )
            )
        }
        var timeout: Int64?
        if let value = headers.first(name: "grpc-timeout") {
            guard let nanoseconds = Self.parseTimeout(value) else {
                return .failure(.grpc(GRPCStatus(.invalidArgument, "malformed grpc-timeout \(Self.printable(value))")))
            }
            timeout = nanoseconds
        }
        var route: String?
        // Whole values, not comma-split ones: an empty or odd value must be refused, not skipped.
        let routes = headers[RouterService.routeMetadataKey]
        if routes.count > 1 {
            return .failure(.grpc(GRPCStatus(.invalidArgument, "more than one jmp-route")))
        }
        if let name = routes.first {
            guard RouterService.isValidRouteName(name) else {
                return .failure(.grpc(GRPCStatus(.notFound, "invalid route name \(Self.printable(name))")))
            }
            route = String(name)
        }
        var readOnly = false
        if let attach = headers.first(name: RouterService.attachMetadataKey) {
            switch attach {
            case "ro": readOnly = true
            case "rw": readOnly = false
            default:
                return .failure(
                    .grpc(GRPCStatus(.invalidArgument, "jmp-attach must be ro or rw, not \(Self.printable(attach))"))
                )
            }
        }
        return .success(
            GRPCRequestHead(
                path: path,
                timeoutNanoseconds: timeout,
                route: route,
                authorization: headers.first(name: RouterService.authorizationMetadataKey),
                authorizationRepeated: headers[RouterService.authorizationMetadataKey].count > 1,
                userAgent: headers.first(name: "user-agent"),
                readOnly: readOnly
            )
        )
    }

    /// `application/grpc`, optionally followed by `+proto` or `;params`.
    static func isGRPCContentType(_ value: String) -> Bool {
        let lower = value.lowercased()
        guard lower.hasPrefix("application/grpc") else { return false }
        let rest = lower.dropFirst("application/grpc".count)
        return rest.isEmpty || rest.hasPrefix("+") || rest.hasPrefix(";")
    }

    /// Parses `grpc-timeout`: 1 to 8 ASCII digits and a unit (H, M, S, m, u, n).
    public static func parseTimeout(_ value: String) -> Int64? {
        let utf8 = Array(value.utf8)
        guard utf8.count >= 2, utf8.count <= 9, let unit = utf8.last else { return nil }
        var amount: Int64 = 0
        for byte in utf8.dropLast() {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        let (result, overflow): (Int64, Bool)
        switch unit {
        case UInt8(ascii: "H"): (result, overflow) = amount.multipliedReportingOverflow(by: 3_600_000_000_000)
        case UInt8(ascii: "M"): (result, overflow) = amount.multipliedReportingOverflow(by: 60_000_000_000)
        case UInt8(ascii: "S"): (result, overflow) = amount.multipliedReportingOverflow(by: 1_000_000_000)
        case UInt8(ascii: "m"): (result, overflow) = amount.multipliedReportingOverflow(by: 1_000_000)
        case UInt8(ascii: "u"): (result, overflow) = amount.multipliedReportingOverflow(by: 1_000)
        case UInt8(ascii: "n"): (result, overflow) = (amount, false)
        default: return nil
        }
        return overflow ? Int64.max : result
    }

    /// A header value shortened and stripped of control characters for messages and logs.
    static func printable(_ value: some StringProtocol) -> String {
        let cleaned = String(value.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        return cleaned.count > 80 ? "\"\(cleaned.prefix(80))…\"" : "\"\(cleaned)\""
    }
}
