import ArgumentParser
import JMPBridgeCore

#if canImport(Glibc)
    import Glibc
#endif

/// The `jmp-bridge` command: the top of the command tree.
@main
struct JMPBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jmp-bridge",
        abstract: "Bridge Jumpstarter's gRPC RouterService.Stream to local Unix sockets, ptys and serial devices.",
        discussion: """
            jmp-bridge terminates jumpstarter.v1.RouterService/Stream and connects every routed \
            stream to a local target chosen by the jmp-route metadata (or the default route). \
            With a gateway: section in its configuration file it is also the gateway of the host's \
            Jumpstarter exporters: it passes their controller calls on and relays their router \
            streams. See jmp-bridge(8) and jmp-bridge.yaml(5).
            """,
        version: BuildInfo.version,
        subcommands: [ServeCommand.self, CheckCommand.self, AttachCommand.self, StatusCommand.self]
    )

    /// Makes the process-wide settings before any other thread exists, then runs the command:
    /// malloc's (an arena limit made later would not move threads that already have their own
    /// arena), and SIGPIPE ignored, so a peer that goes away while the bridge writes (a door's
    /// splice, a control client, a terminal pipe) is an EPIPE to handle, not the end of the process.
    static func main() async {
        _ = MallocTuning.startup
        signal(SIGPIPE, SIG_IGN)
        await Self.main(nil)
    }
}
