import CJMPSystem
import JMPTargets

#if canImport(Glibc)
    import Glibc
#endif

/// Creates the listening socket files of `unix:` listeners, doors and the control socket so that
/// none is ever reachable more widely than configured: the file is born with the configured mode
/// (owner bits only while a group is still to be set), then gets its group, then its full mode.
/// A socket bound first and chmod'ed after would carry the umask's mode for a moment.
enum UnixSocketFile {
    /// A non-blocking listening socket at `path` (an existing socket there is replaced) with file
    /// mode `mode` (nil: what the umask gives) and group `group` (nil: the bridge's). On failure
    /// nothing is left open or bound, and the error says which step failed.
    static func listen(path: String, mode: UInt32?, group: String?, backlog: CInt = 256) throws(BridgeError) -> CInt {
        let finalMode = mode ?? (0o777 & ~Self.umask)
        let born = group == nil ? finalMode : finalMode & 0o700
        let fd = path.withCString { jmp_listen_unix($0, backlog, CInt(born)) }
        guard fd >= 0 else { throw BridgeError("cannot listen on unix:\(path): \(String(cString: strerror(errno)))") }
        do throws(BridgeError) {
            if let group {
                guard let gid = SystemAccounts.groupID(group) else {
                    throw BridgeError("unix:\(path): unknown group '\(group)'")
                }
                guard chown(path, uid_t.max, gid) == 0 else {
                    throw BridgeError("cannot set group \(group) on \(path): \(String(cString: strerror(errno)))")
                }
            }
            // Exactly the mode asked for, also the bits the umask took away at bind(2).
            if mode != nil || group != nil, chmod(path, mode_t(finalMode)) != 0 {
                throw BridgeError(
                    "cannot set mode \(String(finalMode, radix: 8)) on \(path): \(String(cString: strerror(errno)))"
                )
            }
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
        return fd
    }

    /// The process's umask, read without changing it (`/proc/self/status`); 022 if unreadable.
    static var umask: UInt32 {
        guard let file = fopen("/proc/self/status", "r") else { return 0o022 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, CInt(line.count), file) != nil {
            let bytes = line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            let text = String(decoding: bytes, as: UTF8.self)
            if text.hasPrefix("Umask:") {
                return UInt32(String(text.dropFirst(6).filter { $0 >= "0" && $0 <= "7" }), radix: 8) ?? 0o022
            }
        }
        return 0o022
    }
}
