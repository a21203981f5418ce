import NIOCore
import Synchronization

/// One router relay (an exporter's `RouterService/Stream` call carried to the real router), for
/// `status` while it runs and for the log line at its end.
final class RelayRecord: Sendable {
    let id: Int
    let grant: RouterGrant
    let started = NIODeadline.now()
    /// HTTP/2 DATA bytes from the exporter to the router (gRPC framing included).
    let bytesToRouter = Atomic<Int>(0)
    /// HTTP/2 DATA bytes from the router to the exporter.
    let bytesToExporter = Atomic<Int>(0)

    init(id: Int, grant: RouterGrant) {
        self.id = id
        self.grant = grant
    }
}
