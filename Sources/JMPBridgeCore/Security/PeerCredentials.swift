import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The credentials of the process at the other end of a Unix socket, as the kernel recorded
/// them when it connected (`SO_PEERCRED`): they cannot be forged by the peer.
struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    /// Laid out as Linux's `struct ucred`, which Glibc does not export to Swift.
    private struct UCred {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    var pid: Int32
    var uid: UInt32
    var gid: UInt32

    var description: String { "pid \(self.pid) uid \(self.uid) gid \(self.gid)" }

    /// Reads the peer's credentials of an accepted Unix-socket channel.
    static func of(_ channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        let future: EventLoopFuture<UCred> = provider.unsafeGetSocketOption(
            level: .socket,
            name: NIOBSDSocket.Option(rawValue: SO_PEERCRED)
        )
        return future.map { PeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
    }
}
