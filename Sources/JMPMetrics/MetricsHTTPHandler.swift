import NIOCore
import NIOHTTP1

/// Serves one HTTP/1.1 connection of the metrics endpoint: `GET /metrics` (and `HEAD`) answer
/// with the Prometheus text format, any other path 404, any other method on `/metrics` 405 with
/// `Allow: GET, HEAD`. A request body is read and dropped, never kept. Keep-alive is honoured
/// (Prometheus reuses its connection between scrapes); a connection that does not complete a
/// request within the idle timeout of its opening or of its last response is closed.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The path served.
    static let path = "/metrics"
    /// The content type of the text format, as Prometheus asks for it.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private let scrape: @Sendable (any EventLoop) -> EventLoopFuture<[UInt8]>
    private let idleTimeout: TimeAmount
    private var request: HTTPRequestHead?
    /// Closes the connection if no whole request comes in time; nil while a request is answered.
    private var idleTimer: Scheduled<Void>?
    /// The connection is gone: a late scrape's answer starts no timer.
    private var removed = false

    /// `scrape` renders the metrics; it is called once per `GET` or `HEAD /metrics`.
    init(idleTimeout: TimeAmount, scrape: @escaping @Sendable (any EventLoop) -> EventLoopFuture<[UInt8]>) {
        self.idleTimeout = idleTimeout
        self.scrape = scrape
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.startIdleTimer(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.removed = true
        self.idleTimer?.cancel()
        self.idleTimer = nil
    }

    private func startIdleTimer(context: ChannelHandlerContext) {
        self.idleTimer?.cancel()
        self.idleTimer = nil
        guard !self.removed else { return }
        self.idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.idleTimeout) {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.request = head
        case .body:
            break
        case .end:
            guard let head = self.request else { return }
            self.request = nil
            self.idleTimer?.cancel()
            self.idleTimer = nil
            self.respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == Self.path else {
            self.send(.notFound, body: "not found: the metrics are at \(Self.path)\n", to: head, context: context)
            return
        }
        guard head.method == .GET || head.method == .HEAD else {
            self.send(
                .methodNotAllowed,
                body: "method \(head.method) not allowed: use GET or HEAD\n",
                extra: [("Allow", "GET, HEAD")],
                to: head,
                context: context
            )
            return
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.scrape(context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
            let context = loopBound.value
            switch result {
            case .success(let bytes):
                handler.value.send(.ok, body: bytes, contentType: Self.contentType, to: head, context: context)
            case .failure(let error):
                handler.value.send(
                    .internalServerError,
                    body: Array("cannot collect the metrics: \(error)\n".utf8),
                    contentType: "text/plain; charset=utf-8",
                    to: head,
                    context: context
                )
            }
        }
    }

    private func send(
        _ status: HTTPResponseStatus,
        body: String,
        extra: [(String, String)] = [],
        to request: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        self.send(
            status,
            body: Array(body.utf8),
            contentType: "text/plain; charset=utf-8",
            extra: extra,
            to: request,
            context: context
        )
    }

    private func send(
        _ status: HTTPResponseStatus,
        body: [UInt8],
        contentType: String,
        extra: [(String, String)] = [],
        to request: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.count)")])
        headers.add(contentsOf: extra)
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: status, headers: headers)
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            context.write(
                Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))),
                promise: nil
            )
        }
        let sent = context.writeAndFlushAndReturnFuture(Self.wrapOutboundOut(.end(nil)))
        if keepAlive {
            self.startIdleTimer(context: context)
        } else {
            let channel = context.channel
            sent.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

extension ChannelHandlerContext {
    fileprivate func writeAndFlushAndReturnFuture(_ data: NIOAny) -> EventLoopFuture<Void> {
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.writeAndFlush(data, promise: promise)
        return promise.futureResult
    }
}
