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
/// other streams alone.
final class ConnectionErrorLogger: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any

    private let logger: Logger
    private var logged = false

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case is NIOHTTP2Errors.StreamClosed, is NIOHTTP2Errors.NoSuchStream, is NIOHTTP2Errors.StreamError:
            return  // one stream's business, handled (or already over) on that stream
        default:
            break
        }
        if !self.logged {
            self.logged = true
            let peer = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
            switch error {
            case NIOSSLError.uncleanShutdown:
                self.logger.debug("connection closed without TLS close_notify", metadata: ["peer": "\(peer)"])
            case let error as NIOSSLError:
                self.logger.info("TLS failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
            case let error as IOError where error.errnoCode == ECONNRESET || error.errnoCode == EPIPE:
                self.logger.debug("connection reset by the client", metadata: ["peer": "\(peer)"])
            case is ChannelError:
                self.logger.debug("connection closed", metadata: ["peer": "\(peer)", "error": "\(error)"])
            default:
                self.logger.notice(
                    "connection closed after an error: all its streams end",
                    metadata: ["peer": "\(peer)", "error": "\(error)"]
                )
            }
        }
        context.close(promise: nil)
    }
}
