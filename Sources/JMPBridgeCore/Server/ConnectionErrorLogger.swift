import JMPProtocol
import JMPTLS
import Logging
import NIOCore
import NIOHTTP2
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// The last handler of a connection: logs what ends a connection rather than one stream —
/// an HTTP/2 protocol error (after which NIO has sent GOAWAY and closes), a failed TLS
/// handshake, a reset — once, with the peer. Without it such errors would vanish, and a client
/// whose streams were all cut at once would leave no trace in the log.
///
/// After a connection error NIO has sent GOAWAY but leaves the connection open, so this closes
/// it. The errors of a single stream (a frame for a stream the bridge has already reset, say)
/// also pass through here: they are that stream's business and leave the connection and its
/// other streams alone (``HTTP2ErrorScope``). The one exception is DATA beyond a stream's
/// flow-control window, which NIOHTTP2 reports just as it reports DATA beyond the connection's.
final class ConnectionErrorLogger: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any

    private let logger: Logger
    private var logged = false

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard HTTP2ErrorScope(error) == .connection else { return }  // handled (or already over) on that stream
        if !self.logged {
            self.logged = true
            let peer = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
            switch error {
            case NIOSSLError.uncleanShutdown:
                self.logger.debug("connection closed without TLS close_notify", metadata: ["peer": "\(peer)"])
            case _ where TLSHandshakeFailure(error) != nil:
                // What the failure means (the client does not trust the bridge's certificate,
                // does not speak TLS, ...), BoringSSL's reason as tls-error.
                let failure = TLSHandshakeFailure(error)
                self.logger.info(
                    "TLS failed: \(failure?.asServer ?? "")",
                    metadata: ["peer": "\(peer)", "tls-error": "\(failure?.code ?? "")"]
                )
            case let error as NIOSSLError:
                self.logger.info("TLS failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
            case is NIOHTTP2Errors.BadClientMagic:
                self.logger.notice(
                    "connection closed: the client does not speak HTTP/2 (no connection preface: HTTP/1.1, or not HTTP)",
                    metadata: ["peer": "\(peer)"]
                )
            case is NIOHTTP2Errors.UnableToParseFrame:
                self.logger.notice(
                    "connection closed: the client sent bytes that are not an HTTP/2 frame; all its streams end",
                    metadata: ["peer": "\(peer)"]
                )
            case let error as IOError where error.errnoCode == ECONNRESET || error.errnoCode == EPIPE:
                self.logger.debug("connection reset by the client", metadata: ["peer": "\(peer)"])
            case is ChannelError:
                self.logger.debug("connection closed", metadata: ["peer": "\(peer)", "error": "\(error)"])
            case is NIOHTTP2Errors.FlowControlViolation:
                // Over a stream's window NIOHTTP2 resets that stream, over the connection's it
                // sends GOAWAY; both reach here as this one error, so the connection ends either
                // way (RFC 9113, 5.4.1 allows it; grpc-swift does the same). Only a broken HTTP/2
                // client overruns a window.
                self.logger.warning(
                    "connection closed: the client sent more DATA than its flow-control window allowed; all its streams end",
                    metadata: ["peer": "\(peer)"]
                )
            case _ where Self.protection(error) != nil:
                self.logger.warning(
                    "connection closed by HTTP/2 protection: \(Self.protection(error) ?? "")",
                    metadata: ["peer": "\(peer)", "error": "\(type(of: error))"]
                )
            default:
                self.logger.notice(
                    "connection closed after an error: all its streams end",
                    metadata: ["peer": "\(peer)", "error": "\(error)"]
                )
            }
        }
        context.close(promise: nil)
    }

    /// What a client did to trip one of swift-nio-http2's protections, which close the whole
    /// connection (after a GOAWAY with ENHANCE_YOUR_CALM or PROTOCOL_ERROR); nil for any other
    /// error. The numbers are NIOHTTP2's defaults, which the bridge keeps; jmp-bridge(8) lists
    /// them.
    static func protection(_ error: any Error) -> String? {
        switch error {
        case is NIOHTTP2Errors.ExcessiveRSTFrames:
            return "the client reset more than 200 streams within 30 s (rapid reset)"
        case is NIOHTTP2Errors.ExcessiveStreamErrors:
            return "more than 200 stream errors within 30 s"
        case is NIOHTTP2Errors.ExcessiveNumberOfGlitches:
            return "more than 200 stream errors on the connection"
        case is NIOHTTP2Errors.ExcessiveControlFrames:
            return "the client sent more than 200 PING, SETTINGS or PRIORITY frames within 30 s"
        case is NIOHTTP2Errors.ExcessiveEmptyDataFrames:
            return "the client sent empty DATA frames in a row"
        case is NIOHTTP2Errors.ExcessiveContinuationFrames:
            return "the client sent more than 5 CONTINUATION frames in a row"
        case is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock:
            return "a header block larger than 16 KiB"
        case is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering:
            return "the client does not read: more than 10000 control frames queued for it"
        default:
            return nil
        }
    }
}
