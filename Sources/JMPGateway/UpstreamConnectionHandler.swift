import JMPProtocol
import JMPTLS
import Logging
import NIOCore
import NIOHTTP2
import NIOSSL
import NIOTLS

/// Sits after `NIOHTTP2Handler` on an upstream connection: reports when the connection is ready
/// (TLS handshake done, with the notAfter of the certificate the server presented), when the
/// server sends GOAWAY, and sends keepalive PINGs, closing a connection whose PING goes
/// unanswered for a whole interval. It closes the connection on a connection error, never on
/// one stream's (``HTTP2ErrorScope``); a certificate refused in the handshake is reported with
/// its dates (``RefusedServerCertificate``).
final class UpstreamConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let keepalive: TimeAmount?
    /// How long the TLS handshake may take once TCP is connected.
    private let handshakeTimeout: TimeAmount
    private var handshakeTimer: Scheduled<Void>?
    private let usesTLS: Bool
    private let logger: Logger
    private let endpoint: UpstreamEndpoint
    /// Called once: nil when the connection can carry calls, or the error that ended it first.
    private var onReady: ((Error?) -> Void)?
    /// Called when the server sends GOAWAY.
    private let onGoAway: () -> Void
    /// Called when a connection that was ready closes, before its streams' close futures (so
    /// that the pool stops counting on it before their ends count as a drain), with the
    /// connection error that ended it, if one did.
    private let onInactive: ((any Error)?) -> Void
    /// The TLS handshake is done (or the connection is h2c): it has carried calls.
    private var wasReady = false
    private var timer: RepeatedTask?
    private var pingOutstanding = false
    /// The lowest last stream a GOAWAY from the server named: its streams above it were not
    /// processed (RFC 9113, 6.8). NIOHTTP2 closes them as if reset with CANCEL, so their
    /// handlers ask here (``refused(_:)``).
    private var goAwayLastStreamID: HTTP2StreamID?
    /// The notAfter of the certificate the server presented, once the TLS handshake is done.
    private(set) var serverCertificateNotValidAfter: Int64?
    /// The first connection error after the connection was ready: why it closed.
    private(set) var connectionError: (any Error)?

    init(
        endpoint: UpstreamEndpoint,
        usesTLS: Bool,
        keepalive: TimeAmount?,
        handshakeTimeout: TimeAmount,
        logger: Logger,
        onReady: @escaping (Error?) -> Void,
        onGoAway: @escaping () -> Void,
        onInactive: @escaping ((any Error)?) -> Void
    ) {
        self.endpoint = endpoint
        self.usesTLS = usesTLS
        self.keepalive = keepalive
        self.handshakeTimeout = handshakeTimeout
        self.logger = logger
        self.onReady = onReady
        self.onGoAway = onGoAway
        self.onInactive = onInactive
    }

    func channelActive(context: ChannelHandlerContext) {
        if self.usesTLS {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.handshakeTimer = context.eventLoop.scheduleTask(in: self.handshakeTimeout) {
                let (handler, context) = loopBound.value
                handler.ready(UpstreamHandshakeTimeout())
                context.close(promise: nil)
            }
        } else {
            self.ready(nil)
        }
        if let interval = self.keepalive {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.timer = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                let (handler, context) = loopBound.value
                handler.ping(context: context)
            }
        }
        context.fireChannelActive()
    }

    private func ping(context: ChannelHandlerContext) {
        if self.pingOutstanding {
            self.logger.warning(
                "gateway: upstream connection did not answer a keepalive PING; closing it",
                metadata: ["upstream": "\(self.endpoint)"]
            )
            context.close(promise: nil)
            return
        }
        self.pingOutstanding = true
        let frame = HTTP2Frame(
            streamID: .rootStream,
            payload: .ping(HTTP2PingData(withInteger: 0x6A6D_7062), ack: false)
        )
        context.writeAndFlush(self.wrapOutboundOut(frame), promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            self.serverCertificateNotValidAfter = Self.serverCertificate(context).map { Int64($0.notValidAfter) }
            self.ready(nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.payload {
        case .ping(_, ack: true):
            self.pingOutstanding = false
        case .goAway(let lastStreamID, let errorCode, let debugData):
            if errorCode != .noError {
                // Not a drain: the server ends the connection over an error, and its calls with it.
                var metadata: Logger.Metadata = [
                    "upstream": "\(self.endpoint)", "error-code": "\(errorCode)", "last-stream": "\(lastStreamID)",
                ]
                if let debugData, debugData.readableBytes > 0 {
                    metadata["debug"] = "\(String(decoding: debugData.readableBytesView.prefix(200), as: UTF8.self))"
                }
                self.logger.warning("gateway: upstream sent GOAWAY with an error", metadata: metadata)
            }
            self.goAwayLastStreamID = min(lastStreamID, self.goAwayLastStreamID ?? lastStreamID)
            self.onGoAway()
        default:
            break
        }
        context.fireChannelRead(data)
    }

    /// Whether the server has sent GOAWAY: no new stream may be opened on the connection.
    var sawGoAway: Bool { self.goAwayLastStreamID != nil }

    /// Whether the server refused stream `streamID` unprocessed with a GOAWAY.
    func refused(_ streamID: HTTP2StreamID) -> Bool {
        guard let last = self.goAwayLastStreamID else { return false }
        return streamID > last
    }

    /// A connection error closes the connection (NIOHTTP2 has sent GOAWAY, or TLS or the socket
    /// failed); one stream's error is that stream's business: the other calls on the connection
    /// go on.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard HTTP2ErrorScope(error) == .connection else { return }
        // Said when the connection has closed (a failed set-up is said as the set-up's failure).
        // Not IOOnClosedConnection: NIOHTTP2 raises it for a WINDOW_UPDATE, RST_STREAM, DATA or
        // SETTINGS that arrives once the server's GOAWAY has left no stream open (a gRPC server
        // sends such a WINDOW_UPDATE after the last call's end). The connection had nothing left
        // to carry; it closes as a drained one does.
        if self.wasReady, self.connectionError == nil, !(error is NIOHTTP2Errors.IOOnClosedConnection) {
            self.connectionError = error
        }
        // The certificate is still there while NIOSSL reports its failed verification.
        if TLSHandshakeFailure(error)?.code == "CERTIFICATE_VERIFY_FAILED",
            let certificate = Self.serverCertificate(context)
        {
            self.ready(
                RefusedServerCertificate(
                    error: error,
                    notValidBefore: Int64(certificate.notValidBefore),
                    notValidAfter: Int64(certificate.notValidAfter)
                )
            )
        } else {
            self.ready(error)
        }
        context.close(promise: nil)
    }

    /// The leaf certificate the server presented, if the connection uses TLS and it has.
    private static func serverCertificate(_ context: ChannelHandlerContext) -> NIOSSLCertificate? {
        (try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self))?.peerCertificate
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        // NIOHTTP2 has ended the streams' channels; their close futures are still to come.
        if self.wasReady { self.onInactive(self.connectionError) }
        self.ready(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    private func ready(_ error: Error?) {
        self.handshakeTimer?.cancel()
        self.handshakeTimer = nil
        guard let onReady = self.onReady else { return }
        self.onReady = nil
        if error == nil { self.wasReady = true }
        onReady(error)
    }
}
