import NIOCore
import NIOHTTP1
import NIOPosix

/// The metrics endpoint's server: HTTP/1.1 (NIOHTTP1, with its error handling answering
/// malformed requests with 400) and a ``MetricsHTTPHandler`` per connection. The caller binds it
/// (`tcp:`, `unix:` or a socket passed by the service manager).
///
/// Its connections are bounded, so a scraper that leaks connections (or anyone who can reach
/// the address) cannot take the bridge's file descriptors: at most ``Limits/maxConnections`` at
/// once, one more is answered 503 and closed (``MetricsRefusalHandler``), and a connection that
/// does not complete a request within ``Limits/idleTimeout`` of opening or of its last response is
/// closed.
public enum MetricsEndpoint {
    /// How many connections the endpoint serves, and for how long one may wait for a request.
    public struct Limits: Sendable {
        /// Connections served at once (Prometheus uses one per scrape target and server).
        public var maxConnections: Int
        /// How long a connection may take to send a whole request, counted from its opening or
        /// its last response: longer than Prometheus's default scrape interval (1 min), so a
        /// scraper's kept-alive connection is reused.
        public var idleTimeout: TimeAmount

        /// The bridge's limits: 16 connections, 90 s.
        public static let standard = Limits(maxConnections: 16, idleTimeout: .seconds(90))

        /// Limits with the given values.
        public init(maxConnections: Int, idleTimeout: TimeAmount) {
            self.maxConnections = maxConnections
            self.idleTimeout = idleTimeout
        }
    }

    /// A bootstrap serving `GET /metrics` with what `scrape` renders; `refused` is called (on the
    /// connection's event loop) for each connection turned away because `limits.maxConnections`
    /// are open.
    public static func bootstrap(
        group: any EventLoopGroup,
        limits: Limits = .standard,
        refused: @escaping @Sendable () -> Void = {},
        scrape: @escaping @Sendable (any EventLoop) -> EventLoopFuture<[UInt8]>
    ) -> ServerBootstrap {
        let connections = ConnectionCap(limit: limits.maxConnections)
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { channel in
                let admitted = connections.admit()
                if admitted { channel.closeFuture.whenComplete { _ in connections.release() } }
                return channel.eventLoop.makeCompletedFuture {
                    guard admitted else {
                        refused()
                        try channel.pipeline.syncOperations.addHandler(
                            MetricsRefusalHandler(maxConnections: limits.maxConnections)
                        )
                        return
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        MetricsHTTPHandler(idleTimeout: limits.idleTimeout, scrape: scrape)
                    )
                }
            }
    }
}
