/// A route's local door: a listening stream socket whose connections are each relayed,
/// byte for byte, to a new connection to the route's Unix-socket target.
public struct Door: Sendable {
    /// The route, for logs.
    public let route: String
    /// The listening socket (non-blocking); the door loop owns it once added.
    public let listener: CInt
    /// What the door is, for logs (`unix:/run/jmp-bridge/uart0.sock`, `systemd:uart0`).
    public let address: String
    /// The target each connection is relayed to.
    public let targetPath: String
    /// Move bytes with splice(2) (false: read/write through a buffer).
    public let splice: Bool
    /// The socket file to remove when the door closes (nil for passed sockets).
    public let socketFile: DoorSocketFile?
    /// Connections relayed at once; one more is accepted and closed at once, with a log line.
    /// Each connection holds a pipe of up to 1 MiB per direction.
    public let maxConnections: Int

    /// The default of ``maxConnections``.
    public static let defaultMaxConnections = 64

    /// Creates a door.
    public init(
        route: String,
        listener: CInt,
        address: String,
        targetPath: String,
        splice: Bool,
        socketFile: DoorSocketFile?,
        maxConnections: Int = Door.defaultMaxConnections
    ) {
        self.route = route
        self.listener = listener
        self.address = address
        self.targetPath = targetPath
        self.splice = splice
        self.socketFile = socketFile
        self.maxConnections = maxConnections
    }
}
