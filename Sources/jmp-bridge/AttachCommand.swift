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
