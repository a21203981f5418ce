import JMPProtocol
import JMPTargets
import NIOCore
import NIOHPACK

/// The life of one `RouterService/Stream` call, without I/O: ``RouterStreamHandler`` feeds it
/// what happens (request headers, messages, the target's events, timers, completed writes) and
/// performs the actions it returns.
///
/// A stream waits for its request headers, is admitted (``RouterStreamAuthorizer``), connects to
/// its target (payload that arrives meanwhile is kept, bounded by the stream window), bridges,
/// and finishes exactly once. While
/// bridging, each direction ends on its own (docs/WIRE.md, frame types): the client's GOAWAY or
/// END_STREAM is passed on as EOF once everything before it is written; the target's EOF goes
/// to the client as GOAWAY. The RPC ends with OK once both have ended and the last write to the
/// target has completed, or after the linger when a client never ends its side; any failure
/// ends it at once with the status of ``StreamStatusMapping``.
///
/// Events return their actions instead of collecting them in a list, so the byte path costs no
/// allocation here.
struct RouterStreamStateMachine {
    /// Where the stream is in its life.
    enum Phase: Equatable {
        /// No request headers yet.
        case awaitingHeaders
        /// Request headers received; admission is being decided.
        case authorizing
        /// Admitted; the target is being opened.
        case connecting
        /// The response has started and bytes flow both ways.
        case bridging
        /// Trailers sent or the client gone: nothing more happens.
        case finished
    }

    /// The client's direction.
    enum ClientInput: Equatable {
        /// The client may still send.
        case open
        /// GOAWAY or END_STREAM arrived; the EOF is not yet passed on to the target.
        case ended
        /// The EOF was passed on to the target (or it is gone).
        case passedOn
    }

    /// The target's direction.
    enum TargetOutput: Equatable {
        /// The target may still send.
        case open
        /// The target reached EOF and GOAWAY went to the client; `lingering` once the linger
        /// wait for the client's end was armed (from then on, payload from the client restarts it).
        case ended(lingering: Bool)
    }

    private(set) var phase = Phase.awaitingHeaders
    private(set) var client = ClientInput.open
    private(set) var targetOutput = TargetOutput.open
    /// The route's name, for status messages ("-" until admitted).
    private(set) var routeName = "-"
    /// `jmp-attach: ro`: payload from the client is refused.
    private var readOnly = false
    /// Payloads received while connecting, written once connected.
    private var early: [ByteBuffer] = []
    /// The target's channel has closed.
    private(set) var targetGone = false
    /// Whether the target accepts more writes (backpressure from target to client).
    private var targetWritable = true
    /// A read from the client was held back (while connecting, or the target was full).
    private(set) var readPending = false
    /// Writes to the target since the last flush.
    private var targetNeedsFlush = false
    /// Writes issued to the target; the last one's number identifies it.
    private(set) var writesIssued = 0
    /// Waiting for the last write before ending with OK.
    private(set) var finishing = false

    /// Creates a machine for a stream that has not seen its headers yet.
    init() {}

    /// Whether DATA frames from the client are read (admitted and not finished).
    var isReceivingRequest: Bool { self.phase == .connecting || self.phase == .bridging }

    /// Whether bytes from the target go to the client.
    var isBridging: Bool { self.phase == .bridging }

    /// Whether the stream has ended.
    var hasEnded: Bool { self.phase == .finished }

    // MARK: - Request

    /// The request's first HEADERS frame (later ones are ignored).
    mutating func receivedHeaders(_ headers: HPACKHeaders) -> Action {
        guard self.phase == .awaitingHeaders else { return .none }
        switch GRPCRequestHead.parse(headers) {
        case .failure(.http(let status, let reason)):
            self.phase = .finished
            return .refuseNonGRPC(status: status, reason: reason)
        case .failure(.grpc(let status)):
            return .end(self.complete(status))
        case .success(let head):
            self.phase = .authorizing
            return .authorize(head)
        }
    }

    /// Admission granted for `route`: the target is opened next.
    mutating func admitted(route: String, readOnly: Bool) {
        guard self.phase == .authorizing else { return }
        self.routeName = route
        self.readOnly = readOnly
        self.phase = .connecting
    }

    /// One StreamRequest from the client. A ``MessageAction/reject(_:)`` ends the stream (pass
    /// it to ``fail(_:)`` once the DATA frame is given up).
    mutating func receivedMessage(_ frame: RouterFrame) -> MessageAction {
        switch frame.type {
        case .data:
            guard frame.payload.readableBytes > 0 else { return .none }
            guard self.client == .open else { return .reject(StreamStatusMapping.dataAfterGoaway) }
            guard !self.readOnly else { return .reject(StreamStatusMapping.readOnly(route: self.routeName)) }
            if self.phase == .connecting {
                self.early.append(frame.payload)
                return .none
            }
            guard self.phase == .bridging, !self.targetGone else {
                return .reject(
                    StreamStatusMapping.targetGone(route: self.routeName, undelivered: frame.payload.readableBytes)
                )
            }
            self.writesIssued += 1
            self.targetNeedsFlush = true
            if case .ended(lingering: true) = self.targetOutput {
                return .writeToTarget(frame.payload, restartLinger: true)
            }
            return .writeToTarget(frame.payload, restartLinger: false)
        case .goaway:
            // Acted on once the whole DATA frame is processed (``dataFrameProcessed()``).
            if self.client == .open { self.client = .ended }
            return .none
        case .ping:
            return .none
        case .rstStream:
            return .reject(StreamStatusMapping.clientAborted)
        case .unknown(let value):
            return .ignoreUnknown(value)
        }
    }

    /// Every message of a DATA frame without END_STREAM was handled.
    mutating func dataFrameProcessed() -> Action {
        guard self.client != .open else { return .none }
        return self.passClientEOF()
    }

    /// END_STREAM, after a check that the request did not end inside a message.
    mutating func requestEnded() -> Action {
        guard self.isReceivingRequest else { return .none }
        if self.client == .open { self.client = .ended }
        return self.passClientEOF()
    }

    /// The client will send no more: pass EOF on to the target once everything before it is
    /// written. While connecting, ``bridgingStarted()`` does it.
    private mutating func passClientEOF() -> Action {
        guard self.phase == .bridging, self.client != .passedOn else { return .none }
        self.client = .passedOn
        guard !self.targetGone else { return .end(self.finishIfDone()) }
        self.targetNeedsFlush = false
        return .finishTargetInput(then: self.finishIfDone())
    }

    /// The client asked to read more; false holds the read back until the target can take more.
    mutating func readRequested() -> Bool {
        switch self.phase {
        case .connecting:
            self.readPending = true
            return false
        case .bridging where !self.targetWritable:
            self.readPending = true
            return false
        default:
            return true
        }
    }

    /// The end of a batch of reads from the client: true when the target needs a flush.
    mutating func readCompleted() -> Bool {
        guard self.targetNeedsFlush else { return false }
        self.targetNeedsFlush = false
        return true
    }

    // MARK: - Target

    /// The target is open. Write the returned early payloads, flush if there were any, and then
    /// report ``bridgingStarted()``.
    mutating func targetConnected() -> ConnectAction {
        guard self.phase == .connecting else { return .closeTarget }
        self.phase = .bridging
        let early = self.early
        self.early = []
        self.writesIssued += early.count
        return .bridge(early: early)
    }

    /// The early payloads are written: pass on a client EOF that came while connecting, and
    /// the client read held back meanwhile.
    mutating func bridgingStarted() -> BridgeStart {
        let clientEOF = self.client != .open ? self.passClientEOF() : .none
        guard self.readPending, self.targetWritable else { return BridgeStart(clientEOF: clientEOF, read: false) }
        self.readPending = false
        return BridgeStart(clientEOF: clientEOF, read: true)
    }

    /// The target could not be opened.
    mutating func targetConnectFailed(_ error: any Error, target: RouteTarget) -> Action {
        guard self.phase == .connecting else { return .none }
        return .end(
            self.complete(StreamStatusMapping.connectFailed(route: self.routeName, target: target, error: error))
        )
    }

    /// The target reached EOF: everything it read before went to the client already.
    mutating func targetReachedEOF() -> Action {
        guard self.phase == .bridging, self.targetOutput == .open else { return .none }
        // Jumpstarter's peers may never end the RPC after GOAWAY: a client that stays silent
        // for the linger time gets OK.
        let linger = self.client == .open
        self.targetOutput = .ended(lingering: linger)
        return .sendGoaway(armLinger: linger, then: self.finishIfDone())
    }

    /// The target's channel closed, with the error that closed it if there was one.
    mutating func targetClosed(error: (any Error)?) -> Action {
        self.targetGone = true
        // A console can cut an attachment before the attach's own completion has reached this
        // loop (the console closed, say, by a reload that removed its route): fail now, or the
        // stream would be bridged to a target that is already gone.
        if self.phase == .connecting, let error = error as? ConsoleUnavailable {
            return .end(self.complete(StreamStatusMapping.consoleCut(error)))
        }
        guard self.phase == .bridging else { return .none }
        if let error {
            return .end(self.complete(StreamStatusMapping.targetFailed(route: self.routeName, error: error)))
        }
        // A clean close is the target's EOF (NIO reports no separate EOF when our side was
        // already shut down). Data the client sends after this fails the stream.
        let eof = self.targetReachedEOF()
        if case .none = eof { return .end(self.finishIfDone()) }
        return eof
    }

    /// The target can take more, or cannot; true when a held-back client read is to be issued.
    mutating func targetWritabilityChanged(isWritable: Bool) -> Bool {
        self.targetWritable = isWritable
        guard isWritable, self.readPending, self.phase == .bridging else { return false }
        self.readPending = false
        return true
    }

    /// A write to the target failed.
    mutating func targetWriteFailed(_ error: any Error) -> Action {
        .end(self.complete(StreamStatusMapping.writeFailed(route: self.routeName, error: error)))
    }

    /// The write ``Ending/awaitLastWrite(sequence:status:)`` waited for completed.
    mutating func lastWriteCompleted(sequence: Int, succeeded: Bool, status: GRPCStatus) -> Ending {
        self.finishing = false
        guard succeeded else { return .none }  // the failure already failed the stream
        guard sequence == self.writesIssued else {
            return self.finish(status)  // more was written meanwhile: wait for that too
        }
        return self.complete(status)
    }

    // MARK: - Timers

    /// The `idle-timeout` timer fired; `idle` says whether no payload moved for the whole time.
    mutating func idleTimerFired(idle: Bool, timeout: TimeAmount) -> Action {
        guard self.isReceivingRequest else { return .none }
        guard idle else { return .rearmIdleTimer }
        return .end(self.complete(StreamStatusMapping.idle(timeoutMilliseconds: timeout.nanoseconds / 1_000_000)))
    }

    /// The client's `grpc-timeout` passed.
    mutating func deadlinePassed() -> Action {
        .end(self.complete(StreamStatusMapping.deadlinePassed))
    }

    /// The client did not end the RPC within the linger after GOAWAY: end it with OK.
    mutating func lingerExpired() -> Ending {
        self.finish(.ok)
    }

    // MARK: - Ending

    /// Ends the stream at once with `status` (trailers, then the target is closed).
    mutating func fail(_ status: GRPCStatus) -> Action {
        .end(self.complete(status))
    }

    /// The client reset the stream or its connection went away: nothing can be sent back.
    mutating func clientWentAway() -> Action {
        guard self.phase != .finished else { return .none }
        self.phase = .finished
        self.early = []
        return .cancel(StreamStatusMapping.clientCancelled)
    }

    private mutating func finishIfDone() -> Ending {
        guard self.client != .open, self.targetOutput != .open else { return .none }
        return self.finish(.ok)
    }

    /// Ends the RPC with `status` once every byte accepted from the client has reached the target.
    private mutating func finish(_ status: GRPCStatus) -> Ending {
        guard self.phase != .finished, !self.finishing else { return .none }
        guard self.writesIssued > 0, !self.targetGone else { return self.complete(status) }
        self.finishing = true
        return .awaitLastWrite(sequence: self.writesIssued, status: status)
    }

    private mutating func complete(_ status: GRPCStatus) -> Ending {
        guard self.phase != .finished else { return .none }
        let responseStarted = self.phase == .bridging
        self.phase = .finished
        self.early = []
        return .complete(status, trailersOnly: !responseStarted)
    }
}
