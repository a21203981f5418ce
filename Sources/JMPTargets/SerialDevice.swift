import CJMPSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Opening a serial device for a `serial:` route: exclusive, raw, with the configured line
/// settings. These are blocking system calls; call them off the event loops (``SerialConsole``
/// runs them on a thread pool).
public enum SerialDevice {
    /// Why a serial device could not be opened.
    public struct OpenError: Error, CustomStringConvertible, Sendable {
        /// The device is absent (unplugged): worth retrying later.
        public let isAbsent: Bool
        /// What failed, with the system's reason.
        public let description: String
    }

    /// Opens `path` non-blocking and close-on-exec, takes an exclusive `flock` on it (so a second
    /// bridge or any program using `flock` is refused), sets `TIOCEXCL` (so plain opens by
    /// anyone but root fail with EBUSY), and applies `settings`. Returns the descriptor.
    public static func open(path: String, settings: SerialSettings) throws(OpenError) -> CInt {
        let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let absent = [ENOENT, ENODEV, ENXIO, EIO].contains(code)
            throw OpenError(isAbsent: absent, description: "cannot open \(path): \(Self.text(code))")
        }
        do {
            try Self.prepare(fd, path: path, settings: settings)
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Takes back a descriptor of `path` kept over a restart (the service manager's
    /// file-descriptor store): checks that it is still that device, then locks and configures it
    /// as ``open(path:settings:)`` does (the lock belongs to the open file, so it is still held).
    /// On failure the caller keeps, and closes, the descriptor.
    public static func adopt(_ fd: CInt, path: String, settings: SerialSettings) throws(OpenError) {
        var held = Glibc.stat()
        var named = Glibc.stat()
        // The configured path may be a symlink (/dev/serial/by-id/...): compare its target.
        let resolved = realpath(path, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        }
        guard fstat(fd, &held) == 0, let resolved, lstat(resolved, &named) == 0,
            held.st_rdev == named.st_rdev,
            held.st_mode & S_IFMT == S_IFCHR
        else {
            throw OpenError(isAbsent: false, description: "the stored descriptor is not \(path) any more")
        }
        guard jmp_make_nonblocking(fd) == 0 else {
            throw OpenError(
                isAbsent: false,
                description: "cannot make \(path) non-blocking: \(String(cString: strerror(errno)))"
            )
        }
        try Self.prepare(fd, path: path, settings: settings)
    }

    private static func prepare(_ fd: CInt, path: String, settings: SerialSettings) throws(OpenError) {
        guard isatty(fd) == 1 else {
            throw OpenError(isAbsent: false, description: "\(path) is not a terminal device")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EWOULDBLOCK {
                throw OpenError(
                    isAbsent: false,
                    description: "\(path) is in use: another process holds a lock on it (another jmp-bridge?)"
                )
            }
            throw OpenError(isAbsent: false, description: "cannot lock \(path): \(Self.text(code))")
        }
        if jmp_set_exclusive(fd) != 0 {
            throw OpenError(isAbsent: false, description: "cannot make \(path) exclusive: \(Self.text(errno))")
        }
        var attributes = termios()
        guard tcgetattr(fd, &attributes) == 0 else {
            throw OpenError(isAbsent: false, description: "cannot read the settings of \(path): \(Self.text(errno))")
        }
        settings.apply(to: &attributes)
        guard tcsetattr(fd, TCSANOW, &attributes) == 0 else {
            throw OpenError(isAbsent: false, description: "cannot configure \(path): \(Self.text(errno))")
        }
        if SerialSettings.standardRates[settings.baud] == nil {
            guard settings.baud > 0, settings.baud <= Int(UInt32.max),
                jmp_set_baud_rate(fd, UInt32(settings.baud)) == 0
            else {
                throw OpenError(
                    isAbsent: false,
                    description: "cannot set \(path) to \(settings.baud) baud: \(Self.text(errno))"
                )
            }
        }
    }

    /// The output speed the kernel reports for `fd`, in bits per second (any rate), or nil.
    public static func baudRate(of fd: CInt) -> Int? {
        let rate = jmp_get_baud_rate(fd)
        return rate >= 0 ? Int(rate) : nil
    }

    static func text(_ code: CInt) -> String { String(cString: strerror(code)) }
}
