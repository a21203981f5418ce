import JMPProtocol
import Logging
import NIOCore

/// What one stream moved and held, recorded once when it ends: its places in the stream limits
/// are given back, its bytes added to the bridge's counters, and one log line says how it ended.
struct StreamAccounting {
    /// Payload bytes written to the target.
    var bytesToTarget = 0
    /// Payload bytes sent to the client.
    var bytesFromTarget = 0
    /// The stream's places in the stream limits, held until it ends.
    var admission: StreamAdmission?
    private let started = NIODeadline.now()

    /// Creates the accounting of a stream starting now.
    init() {}

    /// Releases the admission and records how the stream ended.
    mutating func record(_ status: GRPCStatus, statistics: BridgeStatistics, logger: Logger) {
        if let admission = self.admission {
            self.admission = nil
            admission.release()
        }
        statistics.bytesToTargets.add(self.bytesToTarget, ordering: .relaxed)
        statistics.bytesFromTargets.add(self.bytesFromTarget, ordering: .relaxed)
        var metadata: Logger.Metadata = [
            "status": "\(status.code.name)",
            "bytes-to-target": "\(self.bytesToTarget)",
            "bytes-from-target": "\(self.bytesFromTarget)",
            "duration-ms": "\((NIODeadline.now() - self.started).nanoseconds / 1_000_000)",
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
