import CJMPSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The byte pump of `jmp-bridge attach`: standard input to the console, console output to
/// standard output, with poll(2) on the two plus a self-pipe of termination signals.
///
/// On a terminal, Ctrl-B (0x02) three times in a row leaves; fewer are held back and passed on
/// when another key follows. End-of-file on standard input (a pipe) half-closes the connection,
/// which detaches; the session ends when the bridge closes its side.
struct AttachSession {
    /// The key that, pressed three times in a row, leaves.
    static let escapeKey: UInt8 = 0x02
    static let escapeCount = 3

    /// Why the session ended.
    enum Ending: Equatable {
        case escapeKeys
        case remoteClosed
        case signal(CInt)
        case failed(String)
    }

    let socket: CInt
    let input: CInt
    let output: CInt
    /// Standard input is a terminal: watch for the escape keys.
    let interactive: Bool
    let readOnly: Bool

    func run() -> Ending {
        let signals = jmp_termination_pipe()
        var inputOpen = true
        var pendingEscapes = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [
                pollfd(fd: self.socket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inputOpen ? self.input : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: signals, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return .failed("poll: \(String(cString: strerror(errno)))")
            }
            if fds[2].revents != 0 {
                let signal = jmp_read_signal(signals)
                if signal > 0 { return .signal(signal) }
            }
            if fds[0].revents != 0 {
                let count = read(self.socket, &buffer, buffer.count)
                if count < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return .remoteClosed
                }
                if count == 0 { return .remoteClosed }
                guard writeFully(self.output, buffer[..<count]) else {
                    return .failed("writing to standard output: \(String(cString: strerror(errno)))")
                }
            }
            if inputOpen, fds[1].revents != 0 {
                let count = read(self.input, &buffer, buffer.count)
                if count < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return .failed("reading standard input: \(String(cString: strerror(errno)))")
                }
                if count == 0 {
                    inputOpen = false
                    shutdown(self.socket, Int32(SHUT_WR))
                    continue
                }
                var typed: [UInt8] = []
                typed.reserveCapacity(count)
                for byte in buffer[..<count] {
                    guard self.interactive else {
                        typed.append(byte)
                        continue
                    }
                    if byte == Self.escapeKey {
                        pendingEscapes += 1
                        if pendingEscapes == Self.escapeCount { return .escapeKeys }
                        continue
                    }
                    typed += repeatElement(Self.escapeKey, count: pendingEscapes)
                    pendingEscapes = 0
                    typed.append(byte)
                }
                if !self.readOnly, !typed.isEmpty, !writeFully(self.socket, typed[...]) {
                    return .remoteClosed
                }
            }
        }
    }
}
