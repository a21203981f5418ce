import ArgumentParser
import JMPBridgeCore

#if canImport(Glibc)
    import Glibc
#endif

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
