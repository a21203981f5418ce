import JMPProtocol
import NIOCore

extension RouterStreamStateMachine {
    /// What ``RouterStreamHandler`` does after an event.
    enum Action: Equatable {
        /// Nothing.
        case none
        /// Not a gRPC request: answer with this HTTP status, then reset the stream.
        case refuseNonGRPC(status: Int, reason: String)
        /// Check the head's token, resolve its route and take the limits' places
        /// (``RouterStreamAuthorizer``), then report ``admitted(route:readOnly:)`` or ``fail(_:)``.
        case authorize(GRPCRequestHead)
        /// Half-close the target once the last write completes, then `then`.
        case finishTargetInput(then: Ending)
        /// Send GOAWAY to the client; arm the linger (cancelling an armed one); then `then`.
        case sendGoaway(armLinger: Bool, then: Ending)
        /// Arm the idle timer again, for the last payload's time plus the timeout.
        case rearmIdleTimer
        /// End the RPC, or wait to.
        case end(Ending)
        /// The client is gone: cancel the timers, close the target and record `status`; nothing
        /// is sent.
        case cancel(GRPCStatus)
    }

    /// How the RPC ends after an event.
    enum Ending: Equatable {
        /// Not yet.
        case none
        /// Wait for write number `sequence` to the target, then report
        /// ``lastWriteCompleted(sequence:succeeded:status:)``.
        case awaitLastWrite(sequence: Int, status: GRPCStatus)
        /// Cancel the timers, send `status` (as a trailers-only response when the response has
        /// not started), reset the stream once that is out, close the target and record `status`.
        case complete(GRPCStatus, trailersOnly: Bool)
    }

    /// What to do with one StreamRequest.
    enum MessageAction: Equatable {
        /// Nothing (kept for later, or nothing to do).
        case none
        /// Write the payload to the target, restarting the linger wait when `restartLinger`.
        case writeToTarget(ByteBuffer, restartLinger: Bool)
        /// The request is refused: stop reading the DATA frame and fail with this status.
        case reject(GRPCStatus)
        /// A frame type this version does not know: ignored (forward compatibility).
        case ignoreUnknown(Int)
    }

    /// What to do with a target that has just connected.
    enum ConnectAction: Equatable {
        /// The stream ended meanwhile: close the target.
        case closeTarget
        /// Start the response, write these payloads (received while connecting) to the target
        /// and flush them, then report ``bridgingStarted()``.
        case bridge(early: [ByteBuffer])
    }

    /// What follows the start of bridging.
    struct BridgeStart: Equatable {
        /// Passing on a client EOF received while connecting.
        var clientEOF: Action
        /// Whether to issue the client read held back while connecting.
        var read: Bool
    }
}
