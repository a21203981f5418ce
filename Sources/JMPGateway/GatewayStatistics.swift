import Synchronization

/// Counters of the gateway since start, for `status`.
final class GatewayStatistics: Sendable {
    /// Calls forwarded to the controller (Listen included).
    let controllerCalls = Atomic<Int>(0)
    /// Router relays started.
    let relays = Atomic<Int>(0)
    /// `RouterService/Stream` calls refused: a token the gateway never handed out (or used, or expired).
    let refusedTokens = Atomic<Int>(0)
    /// Calls that ended with UNAVAILABLE because their upstream server could not be reached.
    let upstreamUnavailable = Atomic<Int>(0)
    /// Calls sent again on a new stream because the server refused them unprocessed.
    let retriedCalls = Atomic<Int>(0)
    /// HTTP/2 DATA bytes relays that have ended moved to the router.
    let endedBytesToRouter = Atomic<Int>(0)
    /// HTTP/2 DATA bytes relays that have ended moved from the router.
    let endedBytesToExporter = Atomic<Int>(0)
}
