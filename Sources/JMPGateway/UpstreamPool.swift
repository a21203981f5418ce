import Logging
import NIOCore
import NIOSSL

/// The upstream connections of one event loop, one per server (and trust): calls from
/// downstream connections on that loop use them without hopping threads.
final class UpstreamPool {
    private struct Key: Hashable {
        var endpoint: UpstreamEndpoint
        var trust: UpstreamTrust
    }

    private let eventLoop: any EventLoop
    private let settings: UpstreamConnectionSettings
    private let logger: Logger
    private let report: @Sendable (String, UpstreamConnectionStatus) -> Void
    private var connections: [Key: UpstreamConnection] = [:]

    init(
        eventLoop: any EventLoop,
        settings: UpstreamConnectionSettings,
        logger: Logger,
        report: @escaping @Sendable (String, UpstreamConnectionStatus) -> Void
    ) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.logger = logger
        self.report = report
    }

    /// Opens a stream to `endpoint` on the pooled connection (see ``UpstreamConnection``).
    func openStream(
        to endpoint: UpstreamEndpoint,
        trust: UpstreamTrust,
        tls: NIOSSLContext?,
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        let key = Key(endpoint: endpoint, trust: trust)
        let connection: UpstreamConnection
        if let existing = self.connections[key] {
            connection = existing
        } else {
            let report = self.report
            let id = "\(ObjectIdentifier(self.eventLoop).hashValue)/\(endpoint)/\(trust)"
            connection = UpstreamConnection(
                endpoint: endpoint,
                eventLoop: self.eventLoop,
                tls: tls,
                settings: self.settings,
                logger: self.logger,
                report: { report(id, $0) }
            )
            self.connections[key] = connection
        }
        return connection.openStream(initializer)
    }
}
