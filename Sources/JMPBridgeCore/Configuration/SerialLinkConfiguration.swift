/// The pty link of a `serial:` route: a pty the bridge allocates and keeps, whose slave is one
/// more attachment of the serial console, reached through a symlink that programs (Jumpstarter's
/// PySerial driver, picocom, minicom) open as if it were the device.
public struct SerialLinkConfiguration: Sendable, Equatable {
    /// The keys of a `link:` mapping; `link: PATH` is short for `link: {path: PATH}`.
    public static let linkKeys = ["path", "mode", "group"]

    /// The symlink to the pty slave.
    public var path: String
    /// File mode of the slave device (default: left as the system sets it, 0620).
    public var mode: UInt32?
    /// Group of the slave device.
    public var group: String?

    /// Creates a link configuration.
    public init(path: String, mode: UInt32? = nil, group: String? = nil) {
        self.path = path
        self.mode = mode
        self.group = group
    }
}
