#if canImport(Glibc)
    import Glibc
#endif

/// A terminal put into raw mode for `attach` and given back exactly as it was.
final class RawTerminal {
    private let fd: CInt
    private var saved: termios
    private var isRaw = false

    /// The terminal on `fd`, or nil if `fd` is not a terminal (a pipe or a file).
    init?(fd: CInt) {
        var attributes = termios()
        guard isatty(fd) == 1, tcgetattr(fd, &attributes) == 0 else { return nil }
        self.fd = fd
        self.saved = attributes
    }

    /// Raw mode: every key is passed on as it is typed (Ctrl-C included), nothing is echoed or
    /// translated; output is not post-processed.
    func makeRaw() {
        var raw = self.saved
        cfmakeraw(&raw)
        if tcsetattr(self.fd, TCSAFLUSH, &raw) == 0 { self.isRaw = true }
    }

    /// Puts the saved settings back (idempotent).
    func restore() {
        guard self.isRaw else { return }
        self.isRaw = false
        while tcsetattr(self.fd, TCSAFLUSH, &self.saved) != 0, errno == EINTR {}
    }

    deinit { self.restore() }
}
