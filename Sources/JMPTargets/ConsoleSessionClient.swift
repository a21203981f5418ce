import NIOCore

/// The client end of a ``ConsoleSession``: a gRPC stream or a control-socket connection. Every
/// call happens on the session's event loop.
public protocol ConsoleSessionClient: AnyObject {
    /// Output for the client, in order: the scrollback first, then what the device printed. Once
    /// the client has taken the bytes it calls ``ConsoleSession/acknowledge(_:)`` with their count.
    func consoleSessionOutput(_ bytes: ByteBuffer)
    /// The hub cut the session (it lagged, or the console went away); it is detached.
    func consoleSessionCut(_ reason: ConsoleUnavailable)
    /// The client's input in flight to the device rose to the session's high watermark (false) or
    /// fell below it again (true).
    func consoleSessionInputWritabilityChanged(isWritable: Bool)
}
