import NIOCore

/// The receiving end of a console attachment, living on its own event loop (a ``ConsoleSession``):
/// it gets the console's output and, once, the reason it was detached.
public protocol ConsoleAttachment: AnyObject, SendableMetatype {
    /// Output the device printed; on the attachment's event loop.
    func output(_ bytes: ByteBuffer)
    /// The attachment was cut (it lagged, or the console went away); on its event loop.
    func cut(_ reason: ConsoleUnavailable)
}

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
