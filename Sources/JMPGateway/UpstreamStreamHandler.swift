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

    init(partner: GatewayStreamHandler) {
        self.partner = partner
    }

    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    func write(_ payload: HTTP2Frame.FramePayload) {
        guard let context = self.context else { return }
        context.write(self.wrapOutboundOut(payload), promise: nil)
    }

    func flush() { self.context?.flush() }

    func close() {
        self.partner = nil
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
        self.partner?.fromUpstream(self.unwrapInboundIn(data))
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
        self.partner?.upstreamError(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let partner = self.partner
        self.partner = nil
        partner?.upstreamClosed()
        context.fireChannelInactive()
    }
}
