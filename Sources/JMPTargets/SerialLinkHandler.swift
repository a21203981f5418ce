import NIOCore

/// Reads the master of a ``SerialLink``'s pty (what the program on the link typed) and hands it
/// to the link, which writes it to the serial device.
final class SerialLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let link: SerialLink

    init(link: SerialLink) {
        self.link = link
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.link.input(Self.unwrapInboundIn(data), from: context.channel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.link.masterFailed(error)
        context.close(promise: nil)
    }
}
