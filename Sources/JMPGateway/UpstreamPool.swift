import Logging
import NIOCore
import NIOSSL

/// The gateway's upstream connections, one per server (and trust), on the gateway's event loop:
/// calls from its downstream connections, served on the same loop, use them without hopping
/// threads.
///
/// A router's connection that has carried no stream for ``UpstreamConnectionSettings/idleTimeout``
/// is closed and forgotten (it leaves `status` and the metrics), so routers the controller no
/// longer names do not stay connected, or listed as failed, for the months a bridge runs. The
/// controller's connection is kept: exporters always have calls on it.
final class UpstreamPool {
    private struct Key: Hashable {
        var endpoint: UpstreamEndpoint
        var trust: UpstreamTrust
    }

    private struct Entry {
        var connection: UpstreamConnection
        /// The key of its `status` entry.
        var id: String
    }

    private let eventLoop: any EventLoop
    private let settings: UpstreamConnectionSettings
    /// The controller, whose connection is never retired.
    private let controller: UpstreamEndpoint
    private let logger: Logger
    private let report: @Sendable (String, UpstreamConnectionStatus?) -> Void
    private var connections: [Key: Entry] = [:]
    /// Retires unused router connections; cancelled with the pool (or the event loop).
    private var sweeper: RepeatedTask?

    /// `report` is called with each connection's status as it changes, and with nil when the
    /// connection is retired.
    init(
        eventLoop: any EventLoop,
        settings: UpstreamConnectionSettings,
        controller: UpstreamEndpoint,
        logger: Logger,
        report: @escaping @Sendable (String, UpstreamConnectionStatus?) -> Void
    ) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.controller = controller
        self.logger = logger
        self.report = report
        if let timeout = settings.idleTimeout {
            // Swept four times per timeout: a connection goes between 1 and 1.25 timeouts unused.
            let interval = TimeAmount.nanoseconds(max(timeout.nanoseconds / 4, 1))
            // Weakly held: the task does not keep a pool alive, and ends with it.
            let pool = NIOLoopBound(WeakPool(pool: self), eventLoop: eventLoop)
            self.sweeper = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { task in
                guard let pool = pool.value.pool else {
                    task.cancel()
                    return
                }
                pool.retireUnused(olderThan: timeout)
            }
        }
    }

    deinit { self.sweeper?.cancel() }

    private struct WeakPool {
        weak var pool: UpstreamPool?
    }

    /// Opens a stream to `endpoint` on the pooled connection (see ``UpstreamConnection``).
    func openStream(
        to endpoint: UpstreamEndpoint,
        trust: UpstreamTrust,
        tls: UpstreamTrust.ClientContext,
        ignoringBackoff: Bool = false,
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        self.connection(to: endpoint, trust: trust).openStream(
            tls: tls,
            ignoringBackoff: ignoringBackoff,
            initializer
        )
    }

    /// Starts connecting to `endpoint` unless its connection is ready, connecting or waiting
    /// out a backoff (``Gateway/warm(_:)``).
    func warm(_ endpoint: UpstreamEndpoint, trust: UpstreamTrust, tls: UpstreamTrust.ClientContext) {
        self.connection(to: endpoint, trust: trust).warm(tls: tls)
    }

    /// The connection to `endpoint`, made (not yet connected) if the pool has none.
    private func connection(to endpoint: UpstreamEndpoint, trust: UpstreamTrust) -> UpstreamConnection {
        let key = Key(endpoint: endpoint, trust: trust)
        let connection: UpstreamConnection
        if let existing = self.connections[key] {
            connection = existing.connection
        } else {
            let report = self.report
            let id = "\(ObjectIdentifier(self.eventLoop).hashValue)/\(endpoint)/\(trust)"
            connection = UpstreamConnection(
                endpoint: endpoint,
                eventLoop: self.eventLoop,
                trust: trust,
                settings: self.settings,
                logger: self.logger,
                report: { report(id, $0) }
            )
            self.connections[key] = Entry(connection: connection, id: id)
        }
        return connection
    }

    /// Retires every router connection that has carried no stream for `timeout`.
    private func retireUnused(olderThan timeout: TimeAmount) {
        let now = NIODeadline.now()
        for (key, entry) in self.connections
        where key.endpoint != self.controller && entry.connection.isUnused
            && now - entry.connection.lastActive >= timeout
        {
            self.connections[key] = nil
            entry.connection.retire()
            self.report(entry.id, nil)
            self.logger.info(
                "gateway: upstream unused, closed and forgotten",
                metadata: [
                    "upstream": "\(key.endpoint)",
                    "unused-for": "\(Gateway.seconds(now - entry.connection.lastActive))",
                ]
            )
        }
    }
}
