import NIOHPACK

/// The HEADERS frames of a gRPC response.
public enum GRPCResponseHeaders {
    /// Response headers sent before the first message.
    public static func initial() -> HPACKHeaders {
        [":status": "200", "content-type": "application/grpc", "grpc-accept-encoding": "identity"]
    }

    /// Trailers that end a response whose headers were already sent.
    public static func trailers(_ status: GRPCStatus) -> HPACKHeaders {
        var headers: HPACKHeaders = ["grpc-status": String(status.code.rawValue)]
        if !status.message.isEmpty {
            headers.add(name: "grpc-message", value: status.percentEncodedMessage)
        }
        return headers
    }

    /// A trailers-only response: a single HEADERS frame that both starts and ends the response.
    public static func trailersOnly(_ status: GRPCStatus) -> HPACKHeaders {
        var headers: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
        if status.code == .unimplemented {
            headers.add(name: "grpc-accept-encoding", value: "identity")
        }
        headers.add(contentsOf: trailers(status))
        return headers
    }

    /// A plain HTTP error for a request that is not gRPC at all.
    public static func httpError(status: Int) -> HPACKHeaders {
        [":status": String(status)]
    }
}
