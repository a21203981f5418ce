import JMPProtocol
import JMPTargets
import Logging
import NIOCore

/// Opens the target of an admitted stream's route on the stream's event loop: a fresh
/// connection for a `unix:` route, an attachment to the open console of a `pty:` or `serial:`
/// route. The target reports to `sink` from then on.
struct StreamTargetOpener {
    /// Opens a route's target; a failure known at once is a status, a later one fails the future.
    typealias Open = (RouteConfiguration, any StreamTargetDelegate, any EventLoop) -> Result<
        EventLoopFuture<any StreamTarget>, GRPCStatus
    >

    private let environment: BridgeContext
    private let replacement: Open?

    /// The opener of real targets.
    init(environment: BridgeContext) {
        self.environment = environment
        self.replacement = nil
    }

    /// An opener that calls `open` instead (tests stand in targets with it).
    init(environment: BridgeContext, open: @escaping Open) {
        self.environment = environment
        self.replacement = open
    }

    /// Starts opening `route`'s target; must be called on `eventLoop`. A busy `unix:` target
    /// (listen backlog full) is waited for up to the route's `connect-timeout`, logged on `logger`.
    func open(
        _ route: RouteConfiguration,
        sink: any StreamTargetDelegate,
        on eventLoop: any EventLoop,
        logger: Logger
    ) -> Result<EventLoopFuture<any StreamTarget>, GRPCStatus> {
        if let replacement = self.replacement { return replacement(route, sink, eventLoop) }
        switch route.target {
        case .unix(let path):
            let handler = TargetChannelHandler(sink: sink)
            let connector = UnixSocketConnector(
                path: path,
                maxReadSize: self.environment.limits.maxPayloadSize,
                connectTimeout: route.connectTimeout
            )
            return .success(
                connector.connect(on: eventLoop, handler: handler, logger: logger) { sink.awaitsTarget }
                    .assumeIsolated().map {
                        channel -> any StreamTarget in
                        SocketStreamTarget(channel: channel, handler: handler)
                    }.nonisolated()
            )
        case .pty, .serial:
            guard let hub = self.environment.consoles.withLockedValue({ $0[route.name] }) else {
                return .failure(GRPCStatus(.unavailable, "route '\(route.name)': the console is not open"))
            }
            return .success(ConsoleStreamTarget.attach(to: hub, sink: sink, on: eventLoop))
        }
    }
}
