import JMPProtocol
import NIOCore
import NIOHTTP2

/// The upstream half of a gateway call: sits on the stream to the controller or router and
/// hands everything that arrives to its ``GatewayStreamHandler``, which writes to it in turn.
/// Both run on the same event loop. Reads stop while the downstream stream cannot take more.
final class UpstreamStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// The downstream half; nil once either side is gone.
    var partner: GatewayStreamHandler?
    private var context: ChannelHandlerContext?
    private var readPending = false
    /// The gateway has ended its side of the stream (END_STREAM or RST_STREAM written).
    private var sentEnd = false
    /// The server has ended its side (END_STREAM or RST_STREAM read).
    private var receivedEnd = false

    init(partner: GatewayStreamHandler) {
        self.partner = partner
    }

    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    func write(_ payload: HTTP2Frame.FramePayload) {
        guard let context = self.context else { return }
        if payload.endsStream { self.sentEnd = true }
        guard case .headers = payload else {
            context.write(self.wrapOutboundOut(payload), promise: nil)
            return
        }
        // HEADERS the connection refuses to send (a stream opened after the server's GOAWAY)
        // fail the stream; nothing else would tell its channel.
        let promise = context.eventLoop.makePromise(of: Void.self)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        promise.futureResult.whenFailure { error in
            let handler = handler.value
            guard let context = handler.context else { return }
            handler.errorCaught(context: context, error: error)
        }
        context.write(self.wrapOutboundOut(payload), promise: promise)
    }

    func flush() { self.context?.flush() }

    /// Lets go of the stream: resets it (RST_STREAM CANCEL) unless both sides have ended it, in
    /// which case it is closed on the wire, and a reset would be a frame on a closed stream (RFC
    /// 9113, 5.1); its channel closes once NIOHTTP2 has seen the end too. (The server's end can
    /// reach this handler, and be relayed, before that.)
    func close() {
        self.partner = nil
        guard !(self.sentEnd && self.receivedEnd) else { return }
        self.context?.close(promise: nil)
    }

    /// The downstream stream can take more again.
    func resumeReading() {
        guard self.readPending, let context = self.context else { return }
        self.readPending = false
        context.read()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = self.unwrapInboundIn(data)
        if payload.endsStream { self.receivedEnd = true }
        self.partner?.fromUpstream(payload)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if self.partner?.downstreamWritable ?? true {
            context.read()
        } else {
            self.readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.partner?.resumeDownstreamReading() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.partner?.upstreamError(error, refused: Self.isRefusal(error) || self.refusedByGoAway(context))
        context.close(promise: nil)
    }

    /// Whether `error` says the server did not process the stream: RST_STREAM(REFUSED_STREAM),
    /// or HEADERS the connection would not send after the server's GOAWAY (a stream opened
    /// after it, or on a connection GOAWAY left without streams, which NIOHTTP2 then treats as
    /// closed).
    static func isRefusal(_ error: any Error) -> Bool {
        if let closed = error as? NIOHTTP2Errors.StreamClosed { return closed.errorCode == .refusedStream }
        return error is NIOHTTP2Errors.CreatedStreamAfterGoaway || error is NIOHTTP2Errors.IOOnClosedConnection
    }

    /// Whether a GOAWAY on the connection names a last stream below this one.
    private func refusedByGoAway(_ context: ChannelHandlerContext) -> Bool {
        guard let streamID = try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID),
            let connection = try? context.channel.parent?.pipeline.syncOperations.handler(
                type: UpstreamConnectionHandler.self
            )
        else { return false }
        return connection.refused(streamID)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let partner = self.partner
        self.partner = nil
        // Closed with its connection: the call's end, if it had none, says why.
        if let connection = context.channel.parent, !connection.isActive {
            let handler = try? connection.pipeline.syncOperations.handler(type: UpstreamConnectionHandler.self)
            partner?.upstreamConnectionClosed(UpstreamConnectionLost(handler?.connectionError))
        }
        partner?.upstreamClosed()
        context.fireChannelInactive()
    }
}
