import Logging
import NIOCore
import NIOHTTP2

/// Finds clients that have gone without a word. A connection from which nothing has arrived
/// for ``Keepalive/interval`` gets a PING; if nothing arrives within ``Keepalive/timeout`` after
/// it (its acknowledgement or any other frame), the client is taken to be gone (its host
/// powered off, its network cut, no FIN or RST ever sent) and the connection is closed, which
/// ends its streams and frees what they hold: target connections, console attachments, places
/// under `max-streams`.
///
/// Without it such a connection stays open for good: with nothing to send, TCP never finds out.
/// Jumpstarter's clients ping every 20 s themselves, so a live one hardly ever gets a PING from
/// the bridge. The handler sits after the HTTP/2 handler, where every read of the connection
/// ends in `channelReadComplete`, whichever stream its frames were for.
final class ConnectionKeepaliveHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let keepalive: Keepalive
    private let logger: Logger
    /// When something last arrived on the connection.
    private var lastHeard = NIODeadline.now()
    /// A PING went out and nothing has arrived since.
    private var awaitingAnswer = false
    private var timer: Scheduled<Void>?

    init(keepalive: Keepalive, logger: Logger) {
        self.keepalive = keepalive
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.arm(context: context, at: self.lastHeard + self.keepalive.interval) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.lastHeard = .now()
        self.arm(context: context, at: self.lastHeard + self.keepalive.interval)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.lastHeard = .now()
        if self.awaitingAnswer {
            self.awaitingAnswer = false
            self.arm(context: context, at: self.lastHeard + self.keepalive.interval)
        }
        context.fireChannelReadComplete()
    }

    private func arm(context: ChannelHandlerContext, at deadline: NIODeadline) {
        self.timer?.cancel()
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.fired(context: context)
        }
    }

    private func fired(context: ChannelHandlerContext) {
        self.timer = nil
        guard context.channel.isActive else { return }
        if self.awaitingAnswer {
            let peer = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
            let timeout = self.keepalive.timeout.nanoseconds / 1_000_000
            self.logger.notice(
                "connection closed: no answer to a keepalive PING within \(timeout) ms",
                metadata: [
                    "peer": "\(peer)",
                    "silent-ms": "\((NIODeadline.now() - self.lastHeard).nanoseconds / 1_000_000)",
                ]
            )
            context.close(promise: nil)
            return
        }
        let due = self.lastHeard + self.keepalive.interval
        guard due <= .now() else {
            self.arm(context: context, at: due)
            return
        }
        let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(), ack: false))
        context.writeAndFlush(self.wrapOutboundOut(ping), promise: nil)
        self.awaitingAnswer = true
        self.arm(context: context, at: .now() + self.keepalive.timeout)
    }
}
