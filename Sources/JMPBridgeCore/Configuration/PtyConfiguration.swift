import JMPDoors
import NIOCore

/// A `pty:` route: a pty allocated at start, reachable through a symlink to its slave.
public struct PtyConfiguration: Sendable, Equatable {
    /// The symlink to the slave device that exporter processes open.
    public var link: String
    /// File mode of the slave device (default: left as the system sets it, 0620).
    public var mode: UInt32?
    /// Group of the slave device.
    public var group: String?
    /// Output bytes kept and replayed to each new attachment.
    public var scrollback: Int = 64 * 1024
    /// Output bytes an attachment may fall behind before it is cut.
    public var lagLimit: Int = 1024 * 1024
    /// Streams that may be attached at once; nil: no limit.
    public var maxAttachments: Int?

    /// Creates a pty route configuration.
    public init(link: String, mode: UInt32? = nil, group: String? = nil) {
        self.link = link
        self.mode = mode
        self.group = group
    }
}
