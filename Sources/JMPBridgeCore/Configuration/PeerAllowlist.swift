import NIOCore

/// The peers a `unix:` listener accepts, by the credentials the kernel reports for the
/// connecting process (`SO_PEERCRED`): a peer whose uid is listed, or whose gid is listed, is
/// admitted; any other connection is closed before HTTP/2 starts.
public struct PeerAllowlist: Sendable, Equatable {
    /// User ids admitted.
    public var uids: [UInt32]
    /// Group ids admitted (the peer's effective group, as `SO_PEERCRED` reports it).
    public var gids: [UInt32]

    /// Creates an allowlist.
    public init(uids: [UInt32] = [], gids: [UInt32] = []) {
        self.uids = uids
        self.gids = gids
    }

    /// Whether a peer with these credentials may connect.
    public func admits(uid: UInt32, gid: UInt32) -> Bool {
        self.uids.contains(uid) || self.gids.contains(gid)
    }
}
