import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Receives a console's output; called on the console's event loop (implementations hop to
/// their own).
public protocol ConsoleSubscriber: AnyObject, Sendable {
    /// Bytes the device printed.
    func consoleOutput(_ bytes: ByteBuffer)
    /// The subscriber fell too far behind (or the console went away) and is detached.
    func consoleCut(_ reason: ConsoleUnavailable)
}
