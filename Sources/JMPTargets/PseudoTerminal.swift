import CJMPSystem

#if canImport(Glibc)
    import Glibc
#endif

/// A pty the bridge allocates for a `pty:` route: it keeps the master for its whole life and,
/// so that the master never sees EIO or hang-up while no process has the slave open, one
/// descriptor of the slave as well.
public struct PseudoTerminal: Sendable {
    /// The master side, non-blocking, close-on-exec.
    public let master: CInt
    /// The bridge's own descriptor of the slave (kept open, never read).
    public let slaveKeeper: CInt
    /// The slave device, e.g. `/dev/pts/3`.
    public let slavePath: String

    /// Why a pty could not be set up.
    public struct SetupError: Error, CustomStringConvertible, Sendable {
        /// What failed, with the system's reason.
        public let description: String
    }

    /// Allocates a pty and puts its slave in raw mode (no echo, no line discipline, 8 bits).
    public static func open() throws(SetupError) -> PseudoTerminal {
        var name = [CChar](repeating: 0, count: 128)
        let master = jmp_open_pty_master(&name, name.count)
        guard master >= 0 else { throw SetupError(description: "allocating a pty: \(Self.errnoText())") }
        let slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let slave = Glibc.open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else {
            let reason = Self.errnoText()
            close(master)
            throw SetupError(description: "opening \(slavePath): \(reason)")
        }
        var attributes = termios()
        if tcgetattr(slave, &attributes) == 0 {
            cfmakeraw(&attributes)
            _ = tcsetattr(slave, TCSANOW, &attributes)
        }
        return PseudoTerminal(master: master, slaveKeeper: slave, slavePath: slavePath)
    }

    /// Takes back a pty master the bridge held before a restart (from the service manager's
    /// file-descriptor store): finds its slave and opens a new keeper. The slave's termios are
    /// left as they are, since a process may have the slave open and configured.
    public static func adopt(master: CInt) throws(SetupError) -> PseudoTerminal {
        var name = [CChar](repeating: 0, count: 128)
        guard jmp_adopt_pty_master(master, &name, name.count) == 0 else {
            throw SetupError(description: "descriptor \(master) is not a pty master: \(Self.errnoText())")
        }
        let slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let slave = Glibc.open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else {
            throw SetupError(description: "opening \(slavePath): \(Self.errnoText())")
        }
        return PseudoTerminal(master: master, slaveKeeper: slave, slavePath: slavePath)
    }

    /// Takes back the pty master in `slot` (a descriptor that is no longer a pty master is
    /// closed, dropped from the store and fails), or allocates a new pty and stores its master.
    /// `stored`: the master is in the store, so the pty outlives this process.
    static func open(keptIn slot: ConsoleStoreSlot) throws(SetupError) -> (pty: PseudoTerminal, stored: Bool) {
        guard let restored = slot.restored else {
            let pty = try PseudoTerminal.open()
            return (pty, slot.store(pty.master))
        }
        do {
            return (try PseudoTerminal.adopt(master: restored), true)
        } catch {
            Glibc.close(restored)
            slot.remove()
            throw error
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
