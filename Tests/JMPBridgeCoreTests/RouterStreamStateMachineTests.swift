import JMPProtocol
import JMPTargets
import NIOCore
import NIOHPACK
import Testing

@testable import JMPBridgeCore

/// ``RouterStreamStateMachine`` event by event, without any I/O: every phase, both directions'
/// ends in either order, the wait for the last write, the linger, the target's failures and
/// the timers.
@Suite("Router stream state machine")
struct RouterStreamStateMachineTests {
    typealias Action = RouterStreamStateMachine.Action

    /// The machine under test, by reference: `#expect` cannot call a mutating method of a value.
    final class Machine {
        private var machine = RouterStreamStateMachine()

        var phase: RouterStreamStateMachine.Phase { self.machine.phase }
        var client: RouterStreamStateMachine.ClientInput { self.machine.client }
        var targetOutput: RouterStreamStateMachine.TargetOutput { self.machine.targetOutput }
        var routeName: String { self.machine.routeName }
        var targetGone: Bool { self.machine.targetGone }
        var readPending: Bool { self.machine.readPending }
        var writesIssued: Int { self.machine.writesIssued }
        var finishing: Bool { self.machine.finishing }
        var isReceivingRequest: Bool { self.machine.isReceivingRequest }
        var isBridging: Bool { self.machine.isBridging }
        var hasEnded: Bool { self.machine.hasEnded }

        func receivedHeaders(_ headers: HPACKHeaders) -> Action { self.machine.receivedHeaders(headers) }
        func admitted(route: String, readOnly: Bool) { self.machine.admitted(route: route, readOnly: readOnly) }
        func receivedMessage(_ frame: RouterFrame) -> RouterStreamStateMachine.MessageAction {
            self.machine.receivedMessage(frame)
        }
        func dataFrameProcessed() -> Action { self.machine.dataFrameProcessed() }
        func requestEnded() -> Action { self.machine.requestEnded() }
        func readRequested() -> Bool { self.machine.readRequested() }
        func readCompleted() -> Bool { self.machine.readCompleted() }
        func targetConnected() -> RouterStreamStateMachine.ConnectAction { self.machine.targetConnected() }
        func bridgingStarted() -> RouterStreamStateMachine.BridgeStart { self.machine.bridgingStarted() }
        func targetConnectFailed(_ error: any Error, target: RouteTarget) -> Action {
            self.machine.targetConnectFailed(error, target: target)
        }
        func targetReachedEOF() -> Action { self.machine.targetReachedEOF() }
        func targetClosed(error: (any Error)?) -> Action { self.machine.targetClosed(error: error) }
        func targetWritabilityChanged(isWritable: Bool) -> Bool {
            self.machine.targetWritabilityChanged(isWritable: isWritable)
        }
        func targetWriteFailed(_ error: any Error) -> Action { self.machine.targetWriteFailed(error) }
        func lastWriteCompleted(sequence: Int, succeeded: Bool, status: GRPCStatus) -> RouterStreamStateMachine.Ending {
            self.machine.lastWriteCompleted(sequence: sequence, succeeded: succeeded, status: status)
        }
        func idleTimerFired(idle: Bool, timeout: TimeAmount) -> Action {
            self.machine.idleTimerFired(idle: idle, timeout: timeout)
        }
        func deadlinePassed() -> Action { self.machine.deadlinePassed() }
        func lingerExpired() -> RouterStreamStateMachine.Ending { self.machine.lingerExpired() }
        func fail(_ status: GRPCStatus) -> Action { self.machine.fail(status) }
        func clientWentAway() -> Action { self.machine.clientWentAway() }
    }

    static let requestHeaders: HPACKHeaders = [
        ":method": "POST", ":path": RouterService.streamPath, "content-type": "application/grpc",
    ]

    static func data(_ text: String) -> RouterFrame { RouterFrame(type: .data, payload: ByteBuffer(string: text)) }
    static let goaway = RouterFrame(type: .goaway, payload: ByteBuffer())

    /// A machine whose stream is admitted to route `echo` and connecting.
    static func connecting(readOnly: Bool = false) -> Machine {
        let machine = Machine()
        guard case .authorize = machine.receivedHeaders(Self.requestHeaders) else {
            Issue.record("valid request headers must be authorized")
            return machine
        }
        machine.admitted(route: "echo", readOnly: readOnly)
        return machine
    }

    /// A machine whose stream is bridged to its target.
    static func bridging() -> Machine {
        let machine = Self.connecting()
        #expect(machine.targetConnected() == .bridge(early: []))
        #expect(machine.bridgingStarted() == .init(clientEOF: .none, read: false))
        return machine
    }

    static func completes(_ code: GRPCStatus.Code, trailersOnly: Bool) -> (Action) -> Bool {
        { action in
            guard case .end(.complete(let status, let only)) = action else { return false }
            return status.code == code && only == trailersOnly
        }
    }

    // MARK: - Request headers

    @Test("valid headers are authorized once; later HEADERS frames are ignored")
    func headersAuthorizedOnce() {
        let machine = Machine()
        var headers = Self.requestHeaders
        headers.add(name: "jmp-route", value: "echo")
        headers.add(name: "jmp-attach", value: "ro")
        guard case .authorize(let head) = machine.receivedHeaders(headers) else {
            Issue.record("valid headers must be authorized")
            return
        }
        #expect(head.route == "echo")
        #expect(head.readOnly)
        #expect(machine.phase == .authorizing)
        #expect(!machine.isReceivingRequest, "no DATA is read before admission")
        #expect(machine.receivedHeaders(headers) == .none)
        machine.admitted(route: "echo", readOnly: true)
        #expect(machine.phase == .connecting)
        #expect(machine.routeName == "echo")
        #expect(machine.receivedHeaders(headers) == .none)
    }

    @Test("a request that is not gRPC is refused with its HTTP status and ends the stream")
    func notGRPC() {
        let machine = Machine()
        var headers = Self.requestHeaders
        headers.replaceOrAdd(name: "content-type", value: "text/plain")
        #expect(
            machine.receivedHeaders(headers)
                == .refuseNonGRPC(status: 415, reason: "content-type must be application/grpc")
        )
        #expect(machine.hasEnded)
        #expect(machine.fail(GRPCStatus(.internal)) == .end(.none), "a refused stream sends no trailers")
        #expect(machine.clientWentAway() == .none, "a refused stream is not recorded as cancelled")
    }

    @Test("a gRPC request the bridge refuses gets a trailers-only response")
    func refusedGRPC() {
        let machine = Machine()
        var headers = Self.requestHeaders
        headers.replaceOrAdd(name: ":path", value: "/jumpstarter.v1.RouterService/Dial")
        let action = machine.receivedHeaders(headers)
        #expect(Self.completes(.unimplemented, trailersOnly: true)(action))
        #expect(machine.hasEnded)
    }

    @Test("an authorization failure ends the stream trailers-only")
    func authorizationFailure() {
        let machine = Machine()
        _ = machine.receivedHeaders(Self.requestHeaders)
        let denied = GRPCStatus(.unauthenticated, "no token")
        #expect(machine.fail(denied) == .end(.complete(denied, trailersOnly: true)))
        machine.admitted(route: "echo", readOnly: false)
        #expect(machine.phase == .finished, "admission after the end changes nothing")
    }

    @Test("while admission is decided, only an end or the client leaving changes anything")
    func authorizing() {
        let machine = Machine()
        _ = machine.receivedHeaders(Self.requestHeaders)
        #expect(machine.phase == .authorizing)
        #expect(!machine.isReceivingRequest)
        #expect(machine.readRequested())
        #expect(machine.idleTimerFired(idle: true, timeout: .seconds(1)) == .none)
        #expect(machine.targetReachedEOF() == .none)
        #expect(machine.requestEnded() == .none)
        #expect(machine.targetConnected() == .closeTarget)
        #expect(machine.phase == .authorizing)
        #expect(machine.clientWentAway() == .cancel(GRPCStatus(.cancelled, "the client cancelled the stream")))
        machine.admitted(route: "echo", readOnly: false)
        #expect(machine.phase == .finished)
    }

    // MARK: - Connecting

    @Test("payload received while connecting is kept and handed over, in order, once connected")
    func earlyPayload() {
        let machine = Self.connecting()
        #expect(machine.isReceivingRequest)
        #expect(!machine.isBridging, "nothing from the target goes out before the response starts")
        #expect(machine.receivedMessage(Self.data("a")) == .none)
        #expect(machine.receivedMessage(Self.data("")) == .none)
        #expect(machine.receivedMessage(Self.data("b")) == .none)
        #expect(machine.dataFrameProcessed() == .none)
        #expect(machine.writesIssued == 0)
        #expect(machine.targetConnected() == .bridge(early: [ByteBuffer(string: "a"), ByteBuffer(string: "b")]))
        #expect(machine.writesIssued == 2, "the early payloads count as writes the end waits for")
        #expect(machine.isBridging)
        #expect(machine.bridgingStarted() == .init(clientEOF: .none, read: false))
    }

    @Test("a read while connecting is held and issued once bridged")
    func readHeldWhileConnecting() {
        let machine = Self.connecting()
        #expect(!machine.readRequested())
        #expect(machine.readPending)
        _ = machine.targetConnected()
        #expect(machine.bridgingStarted() == .init(clientEOF: .none, read: true))
        #expect(!machine.readPending)
        #expect(machine.readRequested())
    }

    @Test("a read held while connecting waits for a target that became unwritable meanwhile")
    func readHeldForUnwritableTarget() {
        let machine = Self.connecting()
        #expect(!machine.readRequested())
        #expect(!machine.targetWritabilityChanged(isWritable: false))
        _ = machine.targetConnected()
        #expect(machine.bridgingStarted() == .init(clientEOF: .none, read: false))
        #expect(machine.targetWritabilityChanged(isWritable: true))
        #expect(!machine.targetWritabilityChanged(isWritable: true), "the held read is issued once")
    }

    @Test("GOAWAY while connecting is passed on to the target once bridged")
    func goawayWhileConnecting() {
        let machine = Self.connecting()
        #expect(machine.receivedMessage(Self.data("x")) == .none)
        #expect(machine.receivedMessage(Self.goaway) == .none)
        #expect(machine.dataFrameProcessed() == .none, "no target to half-close yet")
        #expect(machine.client == .ended)
        _ = machine.targetConnected()
        #expect(machine.bridgingStarted() == .init(clientEOF: .finishTargetInput(then: .none), read: false))
        #expect(machine.client == .passedOn)
    }

    @Test("END_STREAM while connecting is passed on to the target once bridged")
    func endStreamWhileConnecting() {
        let machine = Self.connecting()
        #expect(machine.requestEnded() == .none)
        _ = machine.targetConnected()
        #expect(machine.bridgingStarted().clientEOF == .finishTargetInput(then: .none))
    }

    @Test("a target that connects after the stream ended is closed")
    func lateTarget() {
        let machine = Self.connecting()
        _ = machine.deadlinePassed()
        #expect(machine.targetConnected() == .closeTarget)
        let refused = Machine()
        #expect(refused.targetConnected() == .closeTarget, "nor before admission")
    }

    @Test("a target that cannot be opened fails the stream trailers-only with UNAVAILABLE")
    func connectFailed() {
        let machine = Self.connecting()
        let action = machine.targetConnectFailed(
            ChannelError.connectTimeout(.seconds(10)),
            target: .unix(path: "/run/t.sock")
        )
        guard case .end(.complete(let status, trailersOnly: true)) = action else {
            Issue.record("expected a trailers-only end, got \(action)")
            return
        }
        #expect(status.code == .unavailable)
        #expect(status.message == "route 'echo': cannot connect to unix:/run/t.sock: connect timed out after 10000 ms")
        #expect(machine.targetConnectFailed(ChannelError.ioOnClosedChannel, target: .unix(path: "/x")) == .none)

        let console = Self.connecting()
        #expect(
            console.targetConnectFailed(
                ConsoleUnavailable(reason: "console 'c' is not open"),
                target: .unix(path: "/x")
            )
                == .end(.complete(GRPCStatus(.unavailable, "console 'c' is not open"), trailersOnly: true))
        )
    }

    @Test("a console cut while connecting fails at once (RESOURCE_EXHAUSTED when it lagged)")
    func consoleCutWhileConnecting() {
        let machine = Self.connecting()
        #expect(
            machine.targetClosed(error: ConsoleUnavailable(reason: "console 'c' closed"))
                == .end(.complete(GRPCStatus(.unavailable, "console 'c' closed"), trailersOnly: true))
        )
        #expect(machine.targetConnected() == .closeTarget)

        let lagging = Self.connecting()
        #expect(
            lagging.targetClosed(error: ConsoleUnavailable(reason: "too slow", lagged: true))
                == .end(.complete(GRPCStatus(.resourceExhausted, "too slow"), trailersOnly: true))
        )
    }

    @Test("a target that closes cleanly while connecting refuses the payload that follows")
    func targetClosedWhileConnecting() {
        let machine = Self.connecting()
        #expect(machine.targetClosed(error: nil) == .none)
        #expect(machine.targetConnected() == .bridge(early: []))
        _ = machine.bridgingStarted()
        #expect(
            machine.receivedMessage(Self.data("abc"))
                == .reject(
                    GRPCStatus(
                        .unavailable,
                        "route 'echo': the target closed the connection; 3 bytes could not be delivered"
                    )
                )
        )
        // The client's end is not passed on to a target that is gone, and nothing waits for it.
        #expect(machine.requestEnded() == .end(.none))
    }

    // MARK: - Client → target

    @Test("payload while bridged is written to the target and flushed at the end of the read batch")
    func payloadWritten() {
        let machine = Self.bridging()
        #expect(!machine.readCompleted(), "nothing to flush yet")
        #expect(
            machine.receivedMessage(Self.data("hello"))
                == .writeToTarget(ByteBuffer(string: "hello"), restartLinger: false)
        )
        #expect(
            machine.receivedMessage(Self.data("again"))
                == .writeToTarget(ByteBuffer(string: "again"), restartLinger: false)
        )
        #expect(machine.writesIssued == 2)
        #expect(machine.readCompleted())
        #expect(!machine.readCompleted(), "one flush per batch")
    }

    @Test("PING and empty DATA do nothing; unknown frame types are ignored; RST_STREAM aborts")
    func controlFrames() {
        for connecting in [true, false] {
            let machine = connecting ? Self.connecting() : Self.bridging()
            #expect(machine.receivedMessage(RouterFrame(type: .ping, payload: ByteBuffer())) == .none)
            #expect(machine.receivedMessage(Self.data("")) == .none)
            #expect(
                machine.receivedMessage(RouterFrame(type: .unknown(42), payload: ByteBuffer(string: "?")))
                    == .ignoreUnknown(42)
            )
            #expect(machine.writesIssued == 0)
            #expect(
                machine.receivedMessage(RouterFrame(type: .rstStream, payload: ByteBuffer()))
                    == .reject(GRPCStatus(.cancelled, "the client aborted the stream (RST_STREAM frame)"))
            )
        }
    }

    @Test("DATA after the client's GOAWAY is INVALID_ARGUMENT")
    func dataAfterGoaway() {
        for connecting in [true, false] {
            let machine = connecting ? Self.connecting() : Self.bridging()
            _ = machine.receivedMessage(Self.goaway)
            #expect(
                machine.receivedMessage(Self.data("late"))
                    == .reject(GRPCStatus(.invalidArgument, "DATA frame after the client's GOAWAY"))
            )
            #expect(machine.receivedMessage(Self.data("")) == .none, "an empty DATA frame carries nothing to refuse")
        }
    }

    @Test("payload on a read-only attachment is PERMISSION_DENIED")
    func readOnly() {
        let machine = Self.connecting(readOnly: true)
        #expect(
            machine.receivedMessage(Self.data("x"))
                == .reject(GRPCStatus(.permissionDenied, "route 'echo': this attachment is read-only (jmp-attach: ro)"))
        )
        #expect(machine.receivedMessage(Self.goaway) == .none, "a read-only client may still end its side")
    }

    @Test("the client's GOAWAY is passed on once per stream, after the DATA frame that carried it")
    func goawayPassedOnOnce() {
        let machine = Self.bridging()
        #expect(machine.dataFrameProcessed() == .none)
        _ = machine.receivedMessage(Self.data("x"))
        _ = machine.receivedMessage(Self.goaway)
        #expect(machine.client == .ended)
        #expect(machine.dataFrameProcessed() == .finishTargetInput(then: .none))
        #expect(!machine.readCompleted(), "half-closing the target flushes it")
        #expect(machine.dataFrameProcessed() == .none)
        #expect(machine.requestEnded() == .none)
        #expect(machine.receivedMessage(Self.goaway) == .none)
        #expect(machine.client == .passedOn)
    }

    @Test("reads are held while the target cannot take more")
    func backpressure() {
        let machine = Self.bridging()
        #expect(machine.readRequested())
        #expect(!machine.targetWritabilityChanged(isWritable: false))
        #expect(!machine.readRequested())
        #expect(!machine.readRequested())
        #expect(machine.targetWritabilityChanged(isWritable: true), "one held read is issued")
        #expect(!machine.targetWritabilityChanged(isWritable: true))
        #expect(machine.readRequested())
    }

    @Test("reads pass before admission and after the end")
    func readsOutsideTheBridge() {
        let machine = Machine()
        #expect(machine.readRequested())
        _ = machine.fail(GRPCStatus(.internal))
        #expect(machine.readRequested())
        #expect(!machine.targetWritabilityChanged(isWritable: false))
        #expect(machine.readRequested())
        #expect(!machine.targetWritabilityChanged(isWritable: true))
    }

    // MARK: - Both directions ending

    @Test("client ends first, then the target: OK after the last write")
    func clientThenTarget() {
        let machine = Self.bridging()
        _ = machine.receivedMessage(Self.data("x"))
        #expect(machine.requestEnded() == .finishTargetInput(then: .none))
        #expect(
            machine.targetReachedEOF() == .sendGoaway(armLinger: false, then: .awaitLastWrite(sequence: 1, status: .ok))
        )
        #expect(machine.finishing)
        #expect(machine.targetReachedEOF() == .none, "GOAWAY is sent once")
        #expect(
            machine.lastWriteCompleted(sequence: 1, succeeded: true, status: .ok) == .complete(.ok, trailersOnly: false)
        )
        #expect(machine.hasEnded)
    }

    @Test("target ends first, then the client: OK at once when nothing was written")
    func targetThenClient() {
        let machine = Self.bridging()
        #expect(machine.targetReachedEOF() == .sendGoaway(armLinger: true, then: .none))
        #expect(machine.targetOutput == .ended(lingering: true))
        #expect(machine.requestEnded() == .finishTargetInput(then: .complete(.ok, trailersOnly: false)))
    }

    @Test("payload after the target's EOF restarts the linger wait")
    func payloadRestartsLinger() {
        let machine = Self.bridging()
        #expect(
            machine.receivedMessage(Self.data("before"))
                == .writeToTarget(ByteBuffer(string: "before"), restartLinger: false)
        )
        _ = machine.targetReachedEOF()
        #expect(
            machine.receivedMessage(Self.data("after"))
                == .writeToTarget(ByteBuffer(string: "after"), restartLinger: true)
        )
        #expect(machine.dataFrameProcessed() == .none)
        #expect(machine.requestEnded() == .finishTargetInput(then: .awaitLastWrite(sequence: 2, status: .ok)))
    }

    @Test("a target EOF while the client is ended but not yet passed on arms no linger")
    func eofAfterClientGoaway() {
        let machine = Self.bridging()
        _ = machine.receivedMessage(Self.goaway)
        // The DATA frame carrying GOAWAY is still being read when the target's EOF arrives.
        #expect(machine.targetReachedEOF() == .sendGoaway(armLinger: false, then: .complete(.ok, trailersOnly: false)))
        #expect(machine.dataFrameProcessed() == .none)
    }

    @Test("the linger ends a silent client's RPC with OK, after the last write")
    func lingerExpires() {
        let machine = Self.bridging()
        _ = machine.receivedMessage(Self.data("x"))
        _ = machine.targetReachedEOF()
        #expect(machine.lingerExpired() == .awaitLastWrite(sequence: 1, status: .ok))
        #expect(machine.lingerExpired() == .none, "already waiting")
        #expect(
            machine.lastWriteCompleted(sequence: 1, succeeded: true, status: .ok) == .complete(.ok, trailersOnly: false)
        )
        #expect(machine.lingerExpired() == .none)

        let idle = Self.bridging()
        _ = idle.targetReachedEOF()
        #expect(idle.lingerExpired() == .complete(.ok, trailersOnly: false))
    }

    @Test("a write issued while waiting for the last one is waited for too")
    func waitForLaterWrite() {
        let machine = Self.bridging()
        _ = machine.receivedMessage(Self.data("1"))
        _ = machine.targetReachedEOF()
        #expect(machine.lingerExpired() == .awaitLastWrite(sequence: 1, status: .ok))
        #expect(machine.receivedMessage(Self.data("2")) == .writeToTarget(ByteBuffer(string: "2"), restartLinger: true))
        #expect(
            machine.lastWriteCompleted(sequence: 1, succeeded: true, status: .ok)
                == .awaitLastWrite(sequence: 2, status: .ok)
        )
        #expect(!machine.hasEnded)
        #expect(
            machine.lastWriteCompleted(sequence: 2, succeeded: true, status: .ok) == .complete(.ok, trailersOnly: false)
        )
    }

    @Test("a failed last write leaves the end to the write's own failure")
    func failedLastWrite() {
        let machine = Self.bridging()
        _ = machine.receivedMessage(Self.data("x"))
        _ = machine.requestEnded()
        _ = machine.targetReachedEOF()
        #expect(machine.lastWriteCompleted(sequence: 1, succeeded: false, status: .ok) == .none)
        #expect(!machine.finishing)
        let action = machine.targetWriteFailed(ChannelError.ioOnClosedChannel)
        guard case .end(.complete(let status, trailersOnly: false)) = action else {
            Issue.record("expected the stream to fail, got \(action)")
            return
        }
        #expect(status.code == .unavailable)
        #expect(status.message.hasPrefix("route 'echo': writing to the target failed: "))
    }

    // MARK: - The target closing

    @Test("a clean close of the target is its EOF; with the client done, OK without waiting for writes")
    func targetClosedCleanly() {
        let machine = Self.bridging()
        #expect(machine.targetClosed(error: nil) == .sendGoaway(armLinger: true, then: .none))
        #expect(machine.targetGone)
        #expect(machine.targetClosed(error: nil) == .end(.none))

        let done = Self.bridging()
        _ = done.receivedMessage(Self.data("x"))
        #expect(done.requestEnded() == .finishTargetInput(then: .none))
        // The target is gone: its pending writes can never complete.
        #expect(
            done.targetClosed(error: nil) == .sendGoaway(armLinger: false, then: .complete(.ok, trailersOnly: false))
        )
    }

    @Test("a target closed after its EOF ends a stream whose client is done")
    func targetClosedAfterEOF() {
        let machine = Self.bridging()
        _ = machine.targetReachedEOF()
        _ = machine.receivedMessage(Self.goaway)
        #expect(machine.targetClosed(error: nil) == .end(.complete(.ok, trailersOnly: false)))
    }

    @Test(
        "a target that fails while bridged ends the stream with UNAVAILABLE, a lagging console with RESOURCE_EXHAUSTED"
    )
    func targetFailed() {
        let machine = Self.bridging()
        let action = machine.targetClosed(error: ChannelError.eof)
        guard case .end(.complete(let status, trailersOnly: false)) = action else {
            Issue.record("expected the stream to fail, got \(action)")
            return
        }
        #expect(status.code == .unavailable)
        #expect(status.message.hasPrefix("route 'echo': target connection failed: "))

        let console = Self.bridging()
        #expect(
            console.targetClosed(error: ConsoleUnavailable(reason: "lagging", lagged: true))
                == .end(.complete(GRPCStatus(.resourceExhausted, "lagging"), trailersOnly: false))
        )
    }

    @Test("payload after the target closed is UNAVAILABLE and names the bytes lost")
    func payloadAfterTargetClosed() {
        let machine = Self.bridging()
        _ = machine.targetClosed(error: nil)
        #expect(
            machine.receivedMessage(Self.data("four"))
                == .reject(
                    GRPCStatus(
                        .unavailable,
                        "route 'echo': the target closed the connection; 4 bytes could not be delivered"
                    )
                )
        )
    }

    // MARK: - Timers

    @Test("the idle timer ends an idle stream and is re-armed for an active one")
    func idleTimer() {
        var machine = Machine()
        #expect(machine.idleTimerFired(idle: true, timeout: .seconds(1)) == .none, "not admitted")
        machine = Self.connecting()
        #expect(machine.idleTimerFired(idle: false, timeout: .seconds(1)) == .rearmIdleTimer)
        #expect(
            machine.idleTimerFired(idle: true, timeout: .milliseconds(1500))
                == .end(
                    .complete(
                        GRPCStatus(.deadlineExceeded, "no payload either way for 1500 ms (idle-timeout)"),
                        trailersOnly: true
                    )
                )
        )
        #expect(machine.idleTimerFired(idle: true, timeout: .seconds(1)) == .none, "ended")

        let bridged = Self.bridging()
        #expect(
            Self.completes(.deadlineExceeded, trailersOnly: false)(
                bridged.idleTimerFired(idle: true, timeout: .seconds(1))
            )
        )
    }

    @Test("the client's deadline ends the stream with DEADLINE_EXCEEDED")
    func deadline() {
        let machine = Self.connecting()
        #expect(
            machine.deadlinePassed()
                == .end(
                    .complete(
                        GRPCStatus(.deadlineExceeded, "the client's deadline (grpc-timeout) passed"),
                        trailersOnly: true
                    )
                )
        )
        let bridged = Self.bridging()
        #expect(Self.completes(.deadlineExceeded, trailersOnly: false)(bridged.deadlinePassed()))
        #expect(bridged.deadlinePassed() == .end(.none))
    }

    // MARK: - The end

    @Test("a client that goes away cancels the stream once, whatever the phase")
    func clientWentAway() {
        let machines = [Machine(), Self.connecting(), Self.bridging()]
        for machine in machines {
            #expect(machine.clientWentAway() == .cancel(GRPCStatus(.cancelled, "the client cancelled the stream")))
            #expect(machine.hasEnded)
            #expect(machine.clientWentAway() == .none)
        }
    }

    @Test("a failure is trailers-only before the response started and trailers after")
    func failureResponseShape() {
        let connecting = Self.connecting()
        #expect(
            connecting.fail(GRPCStatus(.internal, "x"))
                == .end(.complete(GRPCStatus(.internal, "x"), trailersOnly: true))
        )
        let bridging = Self.bridging()
        #expect(
            bridging.fail(GRPCStatus(.internal, "x"))
                == .end(.complete(GRPCStatus(.internal, "x"), trailersOnly: false))
        )
    }

    @Test("a failure while waiting for the last write ends the stream at once")
    func failureWhileFinishing() {
        let machine = Self.bridging()
        _ = machine.receivedMessage(Self.data("x"))
        _ = machine.requestEnded()
        _ = machine.targetReachedEOF()
        #expect(machine.finishing)
        #expect(Self.completes(.deadlineExceeded, trailersOnly: false)(machine.deadlinePassed()))
        #expect(machine.lastWriteCompleted(sequence: 1, succeeded: true, status: .ok) == .none)
    }

    @Test("every event after the end does nothing")
    func everythingAfterTheEnd() {
        let ended: [Machine] = {
            let refused = Machine()
            var headers = Self.requestHeaders
            headers.replaceOrAdd(name: ":method", value: "GET")
            _ = refused.receivedHeaders(headers)
            let failed = Self.connecting()
            _ = failed.fail(GRPCStatus(.internal))
            let cancelled = Self.bridging()
            _ = cancelled.clientWentAway()
            let finished = Self.bridging()
            _ = finished.requestEnded()
            _ = finished.targetReachedEOF()
            return [refused, failed, cancelled, finished]
        }()
        for machine in ended {
            #expect(machine.hasEnded)
            #expect(!machine.isReceivingRequest)
            #expect(!machine.isBridging)
            #expect(machine.receivedHeaders(Self.requestHeaders) == .none)
            #expect(machine.requestEnded() == .none)
            #expect(machine.dataFrameProcessed() == .none)
            #expect(machine.targetConnected() == .closeTarget)
            #expect(machine.targetConnectFailed(ChannelError.ioOnClosedChannel, target: .unix(path: "/x")) == .none)
            #expect(machine.targetReachedEOF() == .none)
            #expect(machine.targetClosed(error: ChannelError.ioOnClosedChannel) == .none)
            #expect(machine.targetClosed(error: nil) == .none)
            #expect(machine.targetWriteFailed(ChannelError.ioOnClosedChannel) == .end(.none))
            #expect(machine.lastWriteCompleted(sequence: 0, succeeded: true, status: .ok) == .none)
            #expect(machine.idleTimerFired(idle: true, timeout: .seconds(1)) == .none)
            #expect(machine.deadlinePassed() == .end(.none))
            #expect(machine.lingerExpired() == .none)
            #expect(machine.fail(GRPCStatus(.internal)) == .end(.none))
            #expect(machine.clientWentAway() == .none)
            #expect(!machine.readCompleted())
            #expect(machine.readRequested())
            guard case .reject = machine.receivedMessage(Self.data("x")) else {
                Issue.record("payload after the end must be refused (the refusal itself does nothing)")
                continue
            }
        }
    }
}
