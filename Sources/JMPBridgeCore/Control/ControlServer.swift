import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// The control socket (`control: unix:PATH`): a Unix stream socket for local tools, serving
/// `attach` and `status` (see ``ControlRequest``). Mode 0600 unless configured otherwise by
/// the directory it is in: only its owner (root, normally) may attach to consoles.
enum ControlServer {
    /// A bootstrap that serves every connection with a ``ControlConnectionHandler``: bind it to a
    /// path (``bind(path:environment:group:)``), or give it a socket passed by the service
    /// manager with `withBoundSocket(_:)`.
    static func bootstrap(environment: BridgeContext, group: any EventLoopGroup) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlConnectionHandler(environment: environment))
                }
            }
    }

    /// Binds `path` (an existing socket there is replaced), mode 0600.
    static func bind(path: String, environment: BridgeContext, group: any EventLoopGroup) async throws
        -> any Channel
    {
        // Born with mode 0600 (see UnixSocketFile): never reachable by others, not for a moment.
        let socket: CInt
        do {
            socket = try UnixSocketFile.listen(path: path, mode: 0o600, group: nil, backlog: 64)
        } catch {
            throw BridgeError("control socket: \(error)")
        }
        do {
            return try await Self.bootstrap(environment: environment, group: group).withBoundSocket(socket).get()
        } catch {
            close(socket)
            unlink(path)
            throw BridgeError("cannot serve the control socket \(path): \(BridgeListeners.describe(error))")
        }
    }
}
