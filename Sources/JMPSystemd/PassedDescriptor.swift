import CSystemd
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One file descriptor the service manager passed at start (`LISTEN_FDS`), with its name
/// (`FileDescriptorName=` of a socket unit, or `FDNAME=` of a stored descriptor; "unknown" when
/// the manager gave none).
public struct PassedDescriptor: Sendable, Hashable {
    /// The descriptor, numbered from 3 (`SD_LISTEN_FDS_START`).
    public let descriptor: CInt
    /// Its name.
    public let name: String

    /// Creates an entry.
    public init(descriptor: CInt, name: String) {
        self.descriptor = descriptor
        self.name = name
    }

    /// True when this is a listening stream socket of `family` (`AF_UNSPEC`: any family).
    public func isListeningStreamSocket(family: CInt = AF_UNSPEC) -> Bool {
        sd_is_socket(self.descriptor, family, CInt(SOCK_STREAM.rawValue), 1) > 0
    }

    /// The socket's address family (`AF_UNIX`, `AF_INET`, `AF_INET6`), nil if it is not a socket.
    public var socketFamily: CInt? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(self.descriptor, $0, &length) }
        }
        return result == 0 ? CInt(storage.ss_family) : nil
    }
}
