import JMPProtocol
import NIOCore
import Synchronization

/// The stream limits checked before a stream is bridged: in total (`max-streams`), per
/// connection (`max-streams-per-connection`) and per console route (`max-attachments`).
/// A stream over any of them is refused with RESOURCE_EXHAUSTED; once admitted, it holds one
/// place in each until ``release()``.
struct StreamAdmission {
    private let environment: BridgeContext
    private let connection: ConnectionStreams
    private let console: String?

    /// Takes a place in every limit, or none and says which limit refused.
    static func admit(
        route: RouteConfiguration,
        environment: BridgeContext,
        connection: ConnectionStreams
    ) -> Result<StreamAdmission, GRPCStatus> {
        let limits = environment.limits
        let total = environment.statistics.activeStreams.add(1, ordering: .relaxed).newValue
        guard total <= limits.maxStreams else {
            environment.statistics.activeStreams.subtract(1, ordering: .relaxed)
            return .failure(
                GRPCStatus(.resourceExhausted, "the bridge has \(limits.maxStreams) streams open (max-streams)")
            )
        }
        let mine = connection.open.add(1, ordering: .relaxed).newValue
        guard mine <= limits.maxStreamsPerConnection else {
            connection.open.subtract(1, ordering: .relaxed)
            environment.statistics.activeStreams.subtract(1, ordering: .relaxed)
            return .failure(
                GRPCStatus(
                    .resourceExhausted,
                    "this connection has \(limits.maxStreamsPerConnection) streams open (max-streams-per-connection)"
                )
            )
        }
        var console: String?
        if let maximum = route.target.maxAttachments {
            guard environment.takeAttachmentPlace(route) else {
                connection.open.subtract(1, ordering: .relaxed)
                environment.statistics.activeStreams.subtract(1, ordering: .relaxed)
                return .failure(
                    GRPCStatus(
                        .resourceExhausted,
                        "route '\(route.name)': \(maximum) streams are attached already (max-attachments)"
                    )
                )
            }
            console = route.name
        }
        environment.statistics.totalStreams.add(1, ordering: .relaxed)
        return .success(StreamAdmission(environment: environment, connection: connection, console: console))
    }

    /// Gives the places back (once, when the stream ends).
    func release() {
        self.environment.statistics.activeStreams.subtract(1, ordering: .relaxed)
        self.connection.open.subtract(1, ordering: .relaxed)
        if let console = self.console {
            self.environment.releaseAttachmentPlace(console)
        }
    }
}
