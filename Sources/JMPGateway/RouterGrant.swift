import NIOCore

/// A router token the gateway handed to an exporter in a `ListenResponse`, with what it knows of
/// it: where the real router is and whose lease it belongs to.
struct RouterGrant: Sendable {
    /// The router the controller named.
    var router: UpstreamEndpoint
    /// The lease the exporter listens for (from its `ListenRequest`), if known.
    var lease: String?
    /// The exporter (`jumpstarter-namespace/jumpstarter-name` of its Listen call), if known.
    var exporter: String?
    /// When the token stops being honoured: its `exp` claim, at most a day away.
    var expires: NIODeadline
}
