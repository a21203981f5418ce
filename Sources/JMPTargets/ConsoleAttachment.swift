import NIOCore

/// The receiving end of a console attachment, living on its own event loop (a ``ConsoleSession``):
/// it gets the console's output and, once, the reason it was detached.
public protocol ConsoleAttachment: AnyObject, SendableMetatype {
    /// Output the device printed; on the attachment's event loop.
    func output(_ bytes: ByteBuffer)
    /// The attachment was cut (it lagged, or the console went away); on its event loop.
    func cut(_ reason: ConsoleUnavailable)
}
