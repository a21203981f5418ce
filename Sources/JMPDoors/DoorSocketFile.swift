#if canImport(Glibc)
    import Glibc
#endif

/// The socket file a door was bound to, with the identity (device and inode) the file had then.
/// A closing door removes its file only while the path still names that file: a reload binds a
/// changed route's new door at the same path before the door loop has closed the old one, and
/// the old door must not take the new one's file with it.
public struct DoorSocketFile: Sendable, Equatable {
    /// The file's path.
    public let path: String
    private let device: UInt64
    private let inode: UInt64

    /// The file now at `path` (just bound); nil, with `errno` set, if it cannot be read.
    public init?(boundAt path: String) {
        guard let identity = Self.identity(of: path) else { return nil }
        self.path = path
        (self.device, self.inode) = identity
    }

    /// Removes the file, unless it is gone or another file has taken its path.
    func removeIfStillBound() {
        guard let identity = Self.identity(of: self.path), identity == (self.device, self.inode) else { return }
        unlink(self.path)
    }

    private static func identity(of path: String) -> (UInt64, UInt64)? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        return (UInt64(status.st_dev), UInt64(status.st_ino))
    }
}
