import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What a console hub is doing, for `status`.
public struct ConsoleStatus: Sendable, Equatable {
    /// The device is open.
    public var up: Bool
    /// Why not, when it is not.
    public var downReason: String?
    /// Attachments now.
    public var attachments: Int
    /// Bytes the device printed since start.
    public var outputBytes: Int
    /// Bytes written to the device since start.
    public var inputBytes: Int
    /// Attachments cut for lagging since start.
    public var cuts: Int
    /// Bytes in the scrollback now.
    public var scrollbackBytes: Int = 0
    /// Times a device was connected to the hub (the first open included).
    public var deviceConnects: Int = 0
}
