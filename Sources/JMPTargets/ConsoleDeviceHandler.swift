import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Reads the console device and hands everything to the hub.
final class ConsoleDeviceHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let hub: ConsoleHub
    private var error: (any Error)?

    init(hub: ConsoleHub) {
        self.hub = hub
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.hub.deviceOutput(Self.unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.error = error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.hub.deviceClosed(error: self.error)
    }
}
