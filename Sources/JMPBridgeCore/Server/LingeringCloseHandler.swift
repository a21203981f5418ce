import NIOCore

/// Holds a connection's close until the client has closed its end, for at most
/// ``ConnectionPipeline/closeLinger``: the lingering close HTTP servers have always done.
///
/// When a graceful stop has ended a connection's last stream, NIOHTTP2 closes the connection
/// right after that stream's trailers. A client still writing at that moment (a WINDOW_UPDATE for
/// the data it has just read, a PING) gets EPIPE, or over TCP a reset that throws away what it
/// had not read yet; its HTTP/2 stack then fails the whole transport, and a call that ended with
/// OK is reported as UNAVAILABLE ("Stream removed"). Here everything written is flushed, the
/// connection goes on reading (PINGs are answered, nothing unread piles up in the kernel), and it
/// closes once the client closes its end or the linger is over. It sits right before the HTTP/2
/// handler, so it holds the closes that HTTP/2 connection management and errors ask for, and the
/// TLS close_notify follows the real close.
final class LingeringCloseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// No close asked for yet.
        case open
        /// A close was asked for; the connection closes when the timer fires or the client
        /// closes first.
        case lingering(Scheduled<Void>)
        /// Closing for real (the linger is over) or already closed.
        case closed
    }

    private let linger: TimeAmount
    private var state = State.open

    init(linger: TimeAmount) {
        self.linger = linger
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch self.state {
        case .closed:
            context.close(mode: mode, promise: promise)
        case .lingering:
            if let promise { context.channel.closeFuture.cascade(to: promise) }
        case .open:
            if let promise { context.channel.closeFuture.cascade(to: promise) }
            context.flush()
            let timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.linger) {
                self.state = .closed
                context.close(promise: nil)
            }
            self.state = .lingering(timer)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .lingering(let timer) = self.state { timer.cancel() }
        self.state = .closed
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if case .lingering(let timer) = self.state { timer.cancel() }
        self.state = .closed
    }
}
