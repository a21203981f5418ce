import NIOCore

/// Answers a metrics connection over the endpoint's connection limit: `503 Service Unavailable`
/// with a text saying why, written at once without waiting for the request (a scraper reads it as
/// the answer to its request, and shows it), then the connection's write side is closed. It is
/// closed for good when the client closes, or after ``linger`` (reading the request it may still
/// send, so that closing does not reset the connection and lose the answer).
final class MetricsRefusalHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// How long a refused connection waits for the client to close.
    static let linger = TimeAmount.seconds(1)

    private let maxConnections: Int
    private var timer: Scheduled<Void>?

    init(maxConnections: Int) {
        self.maxConnections = maxConnections
    }

    func channelActive(context: ChannelHandlerContext) {
        let body = "jmp-bridge metrics: too many connections (\(self.maxConnections) open), try again later\n"
        let response =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + body
        let channel = context.channel
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in channel.close(mode: .output, promise: nil) }
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: response)), promise: written)
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.linger) {
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The request is read and dropped.
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }
}
