import JMPTargets
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What every stream handler of one bridge shares: the current routes, limits and counters.
public struct StreamEnvironment: Sendable {
    /// The routes in force; replaced as a whole on reload.
    public let routes: NIOLockedValueBox<RouteTable>
    /// Limits from the configuration.
    public let limits: Limits
    /// How long to wait for a client to end the RPC after the stream is otherwise done.
    public let linger: TimeAmount
    /// Shared counters.
    public let statistics: BridgeStatistics
    /// The bridge's logger.
    public let logger: Logger
    /// The open consoles of `pty:` routes, by route name.
    public let consoles: NIOLockedValueBox<[String: ConsoleHub]>
    /// Streams attached to each console route now, for `max-attachments`.
    let consoleAttachments = NIOLockedValueBox<[String: Int]>([:])

    /// Creates an environment.
    public init(routes: RouteTable, limits: Limits, linger: TimeAmount, statistics: BridgeStatistics, logger: Logger) {
        self.routes = NIOLockedValueBox(routes)
        self.limits = limits
        self.linger = linger
        self.statistics = statistics
        self.logger = logger
        self.consoles = NIOLockedValueBox([:])
    }
}
