/// A gRPC status code and message, as sent in `grpc-status` and `grpc-message` trailers.
public struct GRPCStatus: Error, Hashable, Sendable, CustomStringConvertible {
    /// The canonical gRPC status codes used by the bridge.
    public enum Code: Int, Sendable, CaseIterable {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case unauthenticated = 16

        /// The code's name as gRPC spells it, for logs.
        public var name: String {
            switch self {
            case .ok: return "OK"
            case .cancelled: return "CANCELLED"
            case .unknown: return "UNKNOWN"
            case .invalidArgument: return "INVALID_ARGUMENT"
            case .deadlineExceeded: return "DEADLINE_EXCEEDED"
            case .notFound: return "NOT_FOUND"
            case .permissionDenied: return "PERMISSION_DENIED"
            case .resourceExhausted: return "RESOURCE_EXHAUSTED"
            case .failedPrecondition: return "FAILED_PRECONDITION"
            case .aborted: return "ABORTED"
            case .unimplemented: return "UNIMPLEMENTED"
            case .internal: return "INTERNAL"
            case .unavailable: return "UNAVAILABLE"
            case .unauthenticated: return "UNAUTHENTICATED"
            }
        }
    }

    /// The status code.
    public var code: Code
    /// A human-readable message; never contains a secret.
    public var message: String

    /// Creates a status.
    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    /// The successful status.
    public static let ok = GRPCStatus(.ok)

    public var description: String { message.isEmpty ? code.name : "\(code.name): \(message)" }

    /// The message percent-encoded as the gRPC HTTP/2 protocol requires for `grpc-message`:
    /// every byte outside 0x20...0x7E, and `%` itself, becomes `%XX` of its UTF-8 bytes.
    public var percentEncodedMessage: String {
        var out = ""
        out.reserveCapacity(message.utf8.count)
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += byte < 0x10 ? "%0\(hex)" : "%\(hex)"
            }
        }
        return out
    }
}
