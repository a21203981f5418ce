import NIOCore

/// A ``ConsoleSubscriber`` that receives hub events on the hub's loop and hands them to an
/// attachment on the attachment's loop.
public final class LoopHoppingSubscriber<Attachment: ConsoleAttachment>: ConsoleSubscriber {
    private let attachment: NIOLoopBound<Attachment>

    /// Wraps `attachment`, which lives on `eventLoop`.
    public init(_ attachment: Attachment, on eventLoop: any EventLoop) {
        self.attachment = NIOLoopBound(attachment, eventLoop: eventLoop)
    }

    public func consoleOutput(_ bytes: ByteBuffer) {
        let attachment = self.attachment
        attachment.eventLoop.execute { attachment.value.output(bytes) }
    }

    public func consoleCut(_ reason: ConsoleUnavailable) {
        let attachment = self.attachment
        attachment.eventLoop.execute { attachment.value.cut(reason) }
    }
}
