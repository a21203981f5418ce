import JMPDoors
import NIOCore

/// One gRPC listener.
public struct ListenerConfiguration: Sendable, Equatable {
    /// Where to listen.
    public var address: ListenAddress
    /// Certificate and key for TLS on a `tcp:` listener.
    public var tls: TLSFiles?
    /// Plain TCP without TLS was asked for explicitly.
    public var insecure: Bool
    /// File mode of a `unix:` socket, e.g. 0o660.
    public var mode: UInt32?
    /// Group of a `unix:` socket.
    public var group: String?
    /// Authentication of the streams; nil: `jwt` if a `jwt:` section exists, else `none`.
    public var auth: ListenerAuth?
    /// A `tcp:` listener may serve without authentication (said explicitly).
    public var allowUnauthenticated = false
    /// The peers a `unix:` listener admits (`SO_PEERCRED`); nil: any that can open the socket.
    public var peer: PeerAllowlist?
    /// Connections served at once; one more is closed as soon as it is accepted.
    public var maxConnections = ListenerConfiguration.defaultMaxConnections
    /// The default of ``maxConnections``: far more than a lab host's clients and exporters open,
    /// and with ``Limits/maxStreams`` (each stream holds its target's descriptor) well within the
    /// units' `LimitNOFILE=65536`.
    public static let defaultMaxConnections = 1024
    /// Line in the configuration file, for messages.
    public var line: Int?

    /// Creates a listener configuration.
    public init(
        address: ListenAddress,
        tls: TLSFiles? = nil,
        insecure: Bool = false,
        mode: UInt32? = nil,
        line: Int? = nil
    ) {
        self.address = address
        self.tls = tls
        self.insecure = insecure
        self.mode = mode
        self.line = line
    }
}
