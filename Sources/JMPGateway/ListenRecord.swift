import NIOCore
import Synchronization

/// One exporter's `ControllerService/Listen` call through the gateway, for `status`: the lease
/// it listens for and how many router tokens the gateway has handed it.
final class ListenRecord: Sendable {
    let id: Int
    /// `namespace/name` from the call's `jumpstarter-*` metadata.
    let exporter: String
    let started = NIODeadline.now()
    private let leaseName = Mutex<String?>(nil)
    /// `ListenResponse`s forwarded.
    let tokens = Atomic<Int>(0)

    init(id: Int, exporter: String) {
        self.id = id
        self.exporter = exporter
    }

    /// The lease, once the `ListenRequest` was read.
    var lease: String? {
        get { self.leaseName.withLock { $0 } }
        set { self.leaseName.withLock { $0 = newValue } }
    }
}
