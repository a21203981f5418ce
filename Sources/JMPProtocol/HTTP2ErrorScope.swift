import NIOHTTP2

/// What an error that reaches an HTTP/2 connection's pipeline ends: one stream, or the whole
/// connection.
///
/// NIOHTTP2's inline multiplexer hands the connection the bare error of a stream error (after
/// resetting that stream and telling its channel), so the type alone does not always say: a
/// `BadStreamStateTransition` is a connection error only for a stream that is idle or closed
/// (NIOHTTP2's StreamStateMachine), and a stream error in every other state, such as a
/// WINDOW_UPDATE that NIOHTTP2 queued before the peer's END_STREAM arrived and refuses after it
/// (the soak found that closing the connection then killed every other stream on it). A
/// malformed header block or a body longer than its content-length is one stream's error too,
/// and arrives just as bare. A handler that closes its connection on errors closes it only for
/// ``connection``.
public enum HTTP2ErrorScope: Equatable, Sendable {
    /// The error is one stream's business (handled, or already over, on that stream).
    case stream
    /// The error ends the connection (after a connection error NIOHTTP2 has sent GOAWAY but
    /// leaves the connection open for its owner to close).
    case connection

    public init(_ error: any Error) {
        switch error {
        case is NIOHTTP2Errors.StreamClosed, is NIOHTTP2Errors.NoSuchStream, is NIOHTTP2Errors.StreamError:
            self = .stream
        case is NIOHTTP2Errors.InvalidHTTP2HeaderFieldName, is NIOHTTP2Errors.InvalidHTTP2HeaderFieldValue,
            is NIOHTTP2Errors.ForbiddenHeaderField, is NIOHTTP2Errors.PseudoHeaderAfterRegularHeader,
            is NIOHTTP2Errors.InvalidPseudoHeaders, is NIOHTTP2Errors.DuplicatePseudoHeader,
            is NIOHTTP2Errors.UnknownPseudoHeader, is NIOHTTP2Errors.UnsupportedPseudoHeader,
            is NIOHTTP2Errors.InvalidPseudoHeaderValue, is NIOHTTP2Errors.EmptyPathHeader,
            is NIOHTTP2Errors.TrailersWithoutEndStream, is NIOHTTP2Errors.ContentLengthViolated,
            is NIOHTTP2Errors.ContentLengthHeadersMismatch, is NIOHTTP2Errors.ContentLengthHeaderNegative,
            is NIOHTTP2Errors.ContentLengthHeaderMalformedValue:
            // A malformed message (RFC 9113, 8.1.1): NIOHTTP2 checks header blocks and
            // content-length on one stream only (HPACKHeaders+Validation, ContentLengthVerifier)
            // and resets that stream with PROTOCOL_ERROR.
            self = .stream
        case is NIOHTTP2Errors.CreatedStreamAfterGoaway:
            // A client opened a stream after the server's GOAWAY: that stream was never sent,
            // and the connection drains its other streams on.
            self = .stream
        case is NIOHTTP2Errors.FlowControlViolation:
            // DATA beyond a stream's window (NIOHTTP2 resets the stream) and beyond the
            // connection's (it sends GOAWAY) arrive as this same bare error: the connection's
            // scope covers both.
            self = .connection
        case let transition as NIOHTTP2Errors.BadStreamStateTransition:
            guard let state = transition.fromState else {
                self = .connection
                return
            }
            self = state != .idle && state != .closed ? .stream : .connection
        default:
            self = .connection
        }
    }
}
