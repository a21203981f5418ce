import NIOCore

/// The handler at the end of a target channel's pipeline: hands everything it sees to a
/// ``StreamTargetDelegate`` and holds reads while the sink cannot take more (backpressure).
public final class TargetChannelHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private weak var sink: (any StreamTargetDelegate)?
    private var context: ChannelHandlerContext?
    private var readPending = false
    private var closeError: (any Error)?

    /// Creates a handler reporting to `sink`.
    public init(sink: any StreamTargetDelegate) {
        self.sink = sink
    }

    /// Issues a read that was held back because the sink could not take more.
    public func resumeReading() {
        guard self.readPending, let context = self.context else { return }
        self.readPending = false
        context.read()
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.sink?.targetRead(Self.unwrapInboundIn(data))
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.sink?.targetReadComplete()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            self.sink?.targetReachedEOF()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.closeError = self.closeError ?? error
        context.close(promise: nil)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.sink?.targetClosed(error: self.closeError)
        self.sink = nil
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.sink?.targetWritabilityChanged(isWritable: context.channel.isWritable)
    }

    public func read(context: ChannelHandlerContext) {
        if self.sink?.targetMayRead ?? true {
            context.read()
        } else {
            self.readPending = true
        }
    }
}
