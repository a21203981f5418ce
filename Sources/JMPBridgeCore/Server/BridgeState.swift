/// Where the bridge is in its life, as `jmp-bridge status` reports it (`state=`).
public enum BridgeState: String, Sendable, Equatable {
    /// Consoles, doors and listeners are being opened; not every listener is bound yet.
    case starting
    /// Every listener is bound and serving (the moment `READY=1` goes to the service manager).
    case ready
    /// Draining: listeners are closed, open streams may finish.
    case stopping
}
