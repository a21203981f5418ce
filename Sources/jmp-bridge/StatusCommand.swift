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
            per route (and the exporter gateway's lines), as key=value pairs. Programs may rely on \
            these lines, or on the JSON document of --json (see jmp-bridge(8)).
            """
    )

    @OptionGroup var socket: ControlSocketOptions

    @Flag(help: "Print one JSON document (schema jmp-bridge.status/1, see jmp-bridge(8)) instead of the lines.")
    var json = false

    func run() throws {
        do {
            let client = try ControlClient.open(path: try self.socket.socketPath(), request: .status)
            var buffer = [UInt8](repeating: 0, count: 65536)
            var reply: [UInt8] = []
            while true {
                let count = read(client.fd, &buffer, buffer.count)
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { break }
                if self.json {
                    reply += buffer[..<count]
                } else {
                    _ = writeFully(1, buffer[..<count])
                }
            }
            if self.json {
                let document = StatusDocument.json(fromReply: String(decoding: reply, as: UTF8.self))
                _ = writeFully(1, Array(document.utf8)[...])
            }
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
