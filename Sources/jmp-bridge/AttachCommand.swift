import ArgumentParser
import JMPBridgeCore

#if canImport(Glibc)
    import Glibc
#endif

/// `jmp-bridge attach ROUTE`: a local console through the bridge's control socket.
struct AttachCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach this terminal to a console route (Ctrl-B three times to leave).",
        discussion: """
            Connects to the control socket of a running jmp-bridge and attaches to the console of \
            ROUTE like one more stream: the scrollback first, then the live output; what is typed \
            goes to the console. On a terminal, the terminal is in raw mode until you leave with \
            Ctrl-B pressed three times in a row (or the bridge ends the attachment, or a signal \
            arrives), then restored. With pipes instead of a terminal, bytes are passed as they \
            are and end-of-file on standard input detaches.
            """
    )

    @Argument(help: "The console route (a pty: or serial: route).")
    var route: String

    @Flag(name: .customLong("read-only"), help: "Watch only: nothing typed reaches the console.")
    var readOnly = false

    @OptionGroup var socket: ControlSocketOptions

    func run() throws {
        let client: ControlClient
        do {
            client = try ControlClient.open(
                path: try self.socket.socketPath(),
                request: .attach(route: self.route, readOnly: self.readOnly)
            )
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let terminal = RawTerminal(fd: 0)
        if terminal != nil {
            printMessage(
                "attached to '\(self.route)'\(self.readOnly ? " (read-only)" : ""); press Ctrl-B three times to leave"
            )
        }
        terminal?.makeRaw()
        let ending = AttachSession(
            socket: client.fd,
            input: 0,
            output: 1,
            interactive: terminal != nil,
            readOnly: self.readOnly
        ).run()
        terminal?.restore()
        if terminal != nil { _ = write(2, "\n", 1) }  // the cursor may be anywhere on a line
        switch ending {
        case .escapeKeys, .remoteClosed:
            printMessage("detached")
        case .signal(let number):
            printMessage("detached (signal \(number))")
            throw ExitCode(128 + number)
        case .failed(let problem):
            printMessage("detached")
            printError(problem)
            throw ExitCode(1)
        }
    }
}

/// `jmp-bridge status`: what the running bridge is doing.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the state, listeners, routes, console states and byte counts of the running bridge.",
        discussion: """
            Prints one `bridge …` line (state and counters), one `listener …` line per bound gRPC \
            socket (its real address, e.g. the port of a tcp:…:0 listener), then one `route …` line \
            per route, as key=value pairs. Programs may rely on these lines (see jmp-bridge(8)).
            """
    )

    @OptionGroup var socket: ControlSocketOptions

    func run() throws {
        do {
            let client = try ControlClient.open(path: try self.socket.socketPath(), request: .status)
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(client.fd, &buffer, buffer.count)
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { break }
                _ = writeFully(1, buffer[..<count])
            }
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
