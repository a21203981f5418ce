#if canImport(Glibc)
    import Glibc
#endif

/// The stable path of a console: a symlink to the pty slave, replaced atomically, with the
/// slave's mode and group set as configured.
public enum ConsoleLink {
    /// Points `link` at `target` (replacing an existing symlink, never a regular file) and sets
    /// the mode and group of `target`.
    public static func install(link: String, target: String, mode: UInt32?, group: String?) throws(PseudoTerminal
        .SetupError)
    {
        var status = stat()
        if lstat(link, &status) == 0, status.st_mode & S_IFMT != S_IFLNK {
            throw PseudoTerminal.SetupError(description: "\(link) exists and is not a symlink; refusing to replace it")
        }
        let temporary = "\(link).jmp-bridge-\(getpid())"
        unlink(temporary)
        guard symlink(target, temporary) == 0 else {
            throw PseudoTerminal.SetupError(description: "cannot create symlink \(link): \(PseudoTerminal.errnoText())")
        }
        guard rename(temporary, link) == 0 else {
            let reason = PseudoTerminal.errnoText()
            unlink(temporary)
            throw PseudoTerminal.SetupError(description: "cannot create symlink \(link): \(reason)")
        }
        if let mode, chmod(target, mode_t(mode)) != 0 {
            throw PseudoTerminal.SetupError(description: "cannot set mode of \(target): \(PseudoTerminal.errnoText())")
        }
        if let group {
            guard let gid = SystemAccounts.groupID(group) else {
                throw PseudoTerminal.SetupError(description: "unknown group '\(group)'")
            }
            if chown(target, uid_t.max, gid) != 0 {
                throw PseudoTerminal.SetupError(
                    description: "cannot set group of \(target): \(PseudoTerminal.errnoText())"
                )
            }
        }
    }

    /// Removes `link` if it is still a symlink to `target`.
    public static func remove(link: String, target: String) {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(link, &buffer, buffer.count - 1)
        guard count > 0 else { return }
        let current = String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if current == target { unlink(link) }
    }
}
