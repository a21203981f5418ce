import JMPProtocol
import JMPTargets

/// The gRPC status a stream ends with when something fails: the status table of
/// docs/WIRE.md, in one place. Every message names what failed and, where a target is
/// involved, the route; none contains a secret.
enum StreamStatusMapping {
    /// The status for an error thrown while reading the request: a status itself, or a
    /// deframing or decoding error.
    static func status(for error: any Error) -> GRPCStatus {
        switch error {
        case let status as GRPCStatus:
            return status
        case GRPCDeframingError.messageTooLarge(let length, let limit):
            return GRPCStatus(.resourceExhausted, "message of \(length) bytes exceeds the limit of \(limit) bytes")
        case GRPCDeframingError.compressedWithoutEncoding:
            return GRPCStatus(.internal, "compressed message on a stream without grpc-encoding")
        case GRPCDeframingError.truncated(let missing):
            return GRPCStatus(.internal, "request ended inside a message (\(missing) bytes missing)")
        case let error as RouterFrameDecodingError:
            return GRPCStatus(.internal, "malformed StreamRequest: \(error.reason)")
        default:
            return GRPCStatus(.internal, "\(error)")
        }
    }

    /// The target of `route` could not be opened.
    static func connectFailed(route: String, target: RouteTarget, error: any Error) -> GRPCStatus {
        if let error = error as? ConsoleUnavailable {
            return GRPCStatus(.unavailable, error.reason)
        }
        return GRPCStatus(
            .unavailable,
            "route '\(route)': cannot connect to \(target): \(describeSocketError(error))"
        )
    }

    /// A console cut its attachment: RESOURCE_EXHAUSTED for one that lagged, else UNAVAILABLE.
    static func consoleCut(_ error: ConsoleUnavailable) -> GRPCStatus {
        GRPCStatus(error.lagged ? .resourceExhausted : .unavailable, error.reason)
    }

    /// The target's channel closed with `error` while the stream was bridged.
    static func targetFailed(route: String, error: any Error) -> GRPCStatus {
        if let error = error as? ConsoleUnavailable {
            return Self.consoleCut(error)
        }
        return GRPCStatus(.unavailable, "route '\(route)': target connection failed: \(describeSocketError(error))")
    }

    /// A write to the target failed.
    static func writeFailed(route: String, error: any Error) -> GRPCStatus {
        GRPCStatus(.unavailable, "route '\(route)': writing to the target failed: \(describeSocketError(error))")
    }

    /// Payload from the client arrived after the target had closed.
    static func targetGone(route: String, undelivered: Int) -> GRPCStatus {
        GRPCStatus(
            .unavailable,
            "route '\(route)': the target closed the connection; \(undelivered) bytes could not be delivered"
        )
    }

    /// Payload from the client on a read-only attachment.
    static func readOnly(route: String) -> GRPCStatus {
        GRPCStatus(.permissionDenied, "route '\(route)': this attachment is read-only (jmp-attach: ro)")
    }

    /// The `idle-timeout` passed with no payload either way.
    static func idle(timeoutMilliseconds: Int64) -> GRPCStatus {
        GRPCStatus(.deadlineExceeded, "no payload either way for \(timeoutMilliseconds) ms (idle-timeout)")
    }

    /// The client's `grpc-timeout` passed.
    static let deadlinePassed = GRPCStatus(.deadlineExceeded, "the client's deadline (grpc-timeout) passed")
    /// A DATA frame after the client's GOAWAY.
    static let dataAfterGoaway = GRPCStatus(.invalidArgument, "DATA frame after the client's GOAWAY")
    /// The client sent a RST_STREAM router frame.
    static let clientAborted = GRPCStatus(.cancelled, "the client aborted the stream (RST_STREAM frame)")
    /// The client reset the HTTP/2 stream or went away.
    static let clientCancelled = GRPCStatus(.cancelled, "the client cancelled the stream")
}
