import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The peer of a connection is not on the listener's `peer` allowlist.
struct PeerRefused: Error, CustomStringConvertible {
    var credentials: PeerCredentials
    var description: String { "peer \(self.credentials) is not on the allowlist" }
}
