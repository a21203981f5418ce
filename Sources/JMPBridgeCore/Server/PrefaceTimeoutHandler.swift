import Logging
import NIOCore

/// Closes a connection that has not sent the whole HTTP/2 connection preface within
/// ``ConnectionPipeline/prefaceTimeout`` of being accepted, TLS handshake included.
///
/// Without it a client that connects and never speaks, or stops half-way through the TLS
/// handshake or the preface, would hold its descriptor (and its TLS state) for as long as it
/// liked. It sits right before the HTTP/2 handler, so it sees the client's bytes after TLS, and
/// removes itself once the preface's 24 bytes have passed: from then on the connection is
/// HTTP/2's business, and an idle HTTP/2 connection is left open (Jumpstarter clients keep
/// theirs between streams).
final class PrefaceTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The length of the HTTP/2 client connection preface (`PRI * HTTP/2.0…`).
    static let prefaceLength = 24

    private let timeout: TimeAmount
    private let logger: Logger
    private var received = 0
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.arm(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.arm(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.received += Self.unwrapInboundIn(data).readableBytes
        context.fireChannelRead(data)
        if self.received >= Self.prefaceLength, self.timer != nil {
            self.timer?.cancel()
            self.timer = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func arm(context: ChannelHandlerContext) {
        guard self.timer == nil, self.received < Self.prefaceLength else { return }
        let timeout = self.timeout
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            let peer = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
            self.logger.notice(
                "connection closed: no HTTP/2 preface within \(timeout.nanoseconds / 1_000_000) ms of connecting",
                metadata: ["peer": "\(peer)", "bytes-received": "\(self.received)"]
            )
            context.close(promise: nil)
        }
    }
}
