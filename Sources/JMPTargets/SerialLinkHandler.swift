import NIOCore

/// Reads the master of a ``SerialLink``'s pty, which is in packet mode: what the program on the
/// link typed goes to the link, which writes it to the serial device, and the program flushing
/// its input is reported to the link.
final class SerialLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let link: SerialLink

    init(link: SerialLink) {
        self.link = link
    }

    /// The master is in packet mode: every read starts with a status byte.
    private static let dataStatus: UInt8 = 0  // TIOCPKT_DATA
    private static let flushReadStatus: UInt8 = 0x01  // TIOCPKT_FLUSHREAD: the slave flushed its input

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        guard let status = bytes.readInteger(as: UInt8.self) else { return }
        if status == Self.dataStatus {
            if bytes.readableBytes > 0 { self.link.input(bytes, from: context.channel) }
        } else {
            self.link.statusReported(flushRead: status & Self.flushReadStatus != 0)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.link.masterFailed(error)
        context.close(promise: nil)
    }
}
