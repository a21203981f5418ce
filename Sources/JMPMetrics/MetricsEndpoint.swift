import NIOCore
import NIOHTTP1
import NIOPosix

/// The metrics endpoint's server: HTTP/1.1 (NIOHTTP1, with its error handling answering
/// malformed requests with 400) and a ``MetricsHTTPHandler`` per connection. The caller binds it
/// (`tcp:`, `unix:` or a socket passed by the service manager).
public enum MetricsEndpoint {
    /// A bootstrap serving `GET /metrics` with what `scrape` renders.
    public static func bootstrap(
        group: any EventLoopGroup,
        scrape: @escaping @Sendable (any EventLoop) -> EventLoopFuture<[UInt8]>
    ) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(scrape: scrape))
                }
            }
    }
}
