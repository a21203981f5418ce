import ArgumentParser
import JMPBridgeCore

/// The `jmp-bridge` command: the top of the command tree.
@main
struct JMPBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jmp-bridge",
        abstract: "Bridge Jumpstarter's gRPC RouterService.Stream to local Unix sockets, ptys and serial devices.",
        discussion: """
            jmp-bridge terminates jumpstarter.v1.RouterService/Stream and connects every routed \
            stream to a local target chosen by the jmp-route metadata (or the default route). \
            See jmp-bridge(8) and jmp-bridge.yaml(5).
            """,
        version: BuildInfo.version,
        subcommands: [ServeCommand.self, CheckCommand.self, AttachCommand.self, StatusCommand.self]
    )

    /// Makes the malloc settings before any other thread exists (an arena limit made later would
    /// not move threads that already have their own arena), then runs the command.
    static func main() async {
        _ = MallocTuning.startup
        await Self.main(nil)
    }
}
