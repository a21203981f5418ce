import JMPMetrics
import JMPProtocol
import Logging
import NIOCore

/// What one stream moved and held: its bytes are counted as they move (the route's metrics, when
/// there is an endpoint), and when it ends its places in the stream limits are given back, its
/// bytes added to the bridge's counters, and one log line says how it ended.
struct StreamAccounting {
    /// Payload bytes written to the target.
    private(set) var bytesToTarget = 0
    /// Payload bytes sent to the client.
    private(set) var bytesFromTarget = 0
    /// The stream's places in the stream limits, held until it ends.
    private var admission: StreamAdmission?
    /// The admitted stream's route; nil until then.
    private var route: String?
    /// The route's metrics, when the bridge has a metrics endpoint.
    private var metrics: RouteMetrics?
    private let started = NIODeadline.now()
    /// When the stream's target began to open.
    private var connectStarted: NIODeadline?

    /// Creates the accounting of a stream starting now.
    init() {}

    /// The stream was admitted to `route`, holding `admission`; `metrics` are the route's.
    mutating func admitted(route: String, admission: StreamAdmission, metrics: RouteMetrics?) {
        self.route = route
        self.admission = admission
        self.metrics = metrics
        metrics?.streamOpened()
    }

    /// The target begins to open now.
    mutating func targetOpening() {
        self.connectStarted = .now()
    }

    /// The target is connected: the connect latency is recorded. (A failed connect is not a
    /// latency; it shows in the stream's final status.)
    mutating func targetConnected() {
        guard let started = self.connectStarted else { return }
        self.connectStarted = nil
        self.metrics?.targetConnected(after: .nanoseconds((NIODeadline.now() - started).nanoseconds))
    }

    /// `count` payload bytes reached the target.
    mutating func movedToTarget(_ count: Int) {
        self.bytesToTarget += count
        self.metrics?.movedToTarget(count)
    }

    /// `count` payload bytes are on their way to the client.
    mutating func movedFromTarget(_ count: Int) {
        self.bytesFromTarget += count
        self.metrics?.movedFromTarget(count)
    }

    /// Releases the admission and records how the stream ended (once).
    mutating func record(_ status: GRPCStatus, environment: BridgeContext, logger: Logger) {
        let statistics = environment.statistics
        let duration = NIODeadline.now() - self.started
        if let admission = self.admission {
            self.admission = nil
            admission.release()
            self.metrics?.streamClosed(after: .nanoseconds(duration.nanoseconds))
        }
        environment.metrics?.streamEnded(route: self.route, status: status.code.name)
        statistics.bytesToTargets.add(self.bytesToTarget, ordering: .relaxed)
        statistics.bytesFromTargets.add(self.bytesFromTarget, ordering: .relaxed)
        var metadata: Logger.Metadata = [
            "status": "\(status.code.name)",
            "bytes-to-target": "\(self.bytesToTarget)",
            "bytes-from-target": "\(self.bytesFromTarget)",
            "duration-ms": "\(duration.nanoseconds / 1_000_000)",
        ]
        if !status.message.isEmpty { metadata["reason"] = "\(status.message)" }
        switch status.code {
        case .ok:
            logger.info("stream finished", metadata: metadata)
        case .cancelled:
            logger.info("stream cancelled", metadata: metadata)
        default:
            statistics.failedStreams.add(1, ordering: .relaxed)
            logger.warning("stream failed", metadata: metadata)
        }
    }
}
