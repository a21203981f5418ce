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
        let channel: any Channel
        do {
            channel = try await Self.bootstrap(environment: environment, group: group)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
                .get()
        } catch {
            throw BridgeError("cannot listen on the control socket \(path): \(BridgeListeners.describe(error))")
        }
        if chmod(path, 0o600) != 0 {
            let reason = String(cString: strerror(errno))
            try? await channel.close()
            throw BridgeError("cannot set mode 600 on the control socket \(path): \(reason)")
        }
        return channel
    }
}
