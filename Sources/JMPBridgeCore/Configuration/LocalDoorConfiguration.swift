import JMPDoors
import NIOCore

/// A route's local door: a listening socket whose connections are relayed byte for byte to the
/// route's target, with splice(2).
public struct LocalDoorConfiguration: Sendable, Equatable {
    /// `unix:PATH`, or `systemd:NAME` for a socket passed by the service manager.
    public var address: ListenAddress
    /// File mode of a `unix:` door's socket.
    public var mode: UInt32?
    /// Move bytes with splice(2); false forces read/write through a buffer.
    public var splice: Bool = true
    /// Connections relayed at once (each holds up to 1 MiB of pipe per direction); one more is
    /// closed at once and logged.
    public var maxConnections: Int = Door.defaultMaxConnections

    /// Creates a door configuration.
    public init(
        address: ListenAddress,
        mode: UInt32? = nil,
        splice: Bool = true,
        maxConnections: Int = Door.defaultMaxConnections
    ) {
        self.address = address
        self.mode = mode
        self.splice = splice
        self.maxConnections = maxConnections
    }
}
