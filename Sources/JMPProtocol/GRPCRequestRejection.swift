import NIOHPACK

/// Why a request's headers were refused before any message was read.
public enum GRPCRequestRejection: Error, Hashable, Sendable {
    /// Not a gRPC request at all: answer with this HTTP status and no gRPC status.
    case http(status: Int, reason: String)
    /// A gRPC request that fails with this status (sent as a trailers-only response).
    case grpc(GRPCStatus)
}
