import JMPProtocol
import JMPTargets
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// Serves one `jumpstarter.v1.RouterService/Stream` call on one HTTP/2 stream channel and bridges
/// it to the route's target, both channels on the same event loop. What happens when is decided
/// by ``RouterStreamStateMachine``; this handler feeds it the channel's and the target's events
/// and performs what it returns.
///
/// Client → target: DATA frames are split into gRPC messages, copied once out of NIOHTTP2's
/// decoder buffer (see `GRPCMessageDeframer.ownsMessages`), decoded in place, and their payload
/// slices written to the target. Target → client: each read becomes one StreamResponse, written
/// as a small prefix plus the read buffer itself. Backpressure is channel writability in both
/// directions: while one side cannot take more, reads from the other are held, so the HTTP/2
/// window and the socket buffers bound what a stream holds.
///
/// Half-close travels both ways (GOAWAY or END_STREAM ⇒ `shutdown(SHUT_WR)` on the target;
/// target EOF ⇒ GOAWAY), and the RPC ends with OK once both directions are done, or after the
/// linger when a client never ends its side. Every failure ends only this stream, with a status
/// that says what failed (``StreamStatusMapping``).
final class RouterStreamHandler: ChannelDuplexHandler, StreamTargetDelegate {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Payloads up to this size are copied next to their prefix (one DATA frame); larger ones are
    /// sent as the buffer they were read into.
    private static let coalesceLimit = 4096

    private let environment: BridgeContext
    private let authorizer: RouterStreamAuthorizer
    private let opener: StreamTargetOpener
    private var logger: Logger
    private var machine = RouterStreamStateMachine()
    private var context: ChannelHandlerContext?
    private var deframer: GRPCMessageDeframer

    private var target: (any StreamTarget)?
    private var lastTargetWrite: EventLoopFuture<Void>?
    private var accounting = StreamAccounting()

    /// The last payload byte either way, for the idle timeout (kept only with one).
    private var lastActivity = NIODeadline.now()
    private let tracksActivity: Bool
    private var idleTimer: Scheduled<Void>?
    private var deadline: Scheduled<Void>?
    private var lingerTimer: Scheduled<Void>?
    /// Sends the final status; after an error, once the client has stopped sending (RequestDrain).
    private let drain: RequestDrain

    /// Creates a handler for one stream of a connection on a listener with `security`.
    convenience init(environment: BridgeContext, security: ListenerSecurity, connection: ConnectionStreams) {
        self.init(
            environment: environment,
            security: security,
            connection: connection,
            opener: StreamTargetOpener(environment: environment)
        )
    }

    /// Creates a handler that opens targets with `opener`.
    init(
        environment: BridgeContext,
        security: ListenerSecurity,
        connection: ConnectionStreams,
        opener: StreamTargetOpener
    ) {
        self.environment = environment
        self.authorizer = RouterStreamAuthorizer(environment: environment, security: security, connection: connection)
        self.opener = opener
        self.tracksActivity = environment.limits.idleTimeout != nil
        self.logger = environment.logger
        self.deframer = GRPCMessageDeframer(
            maximumMessageLength: environment.limits.maxMessageSize,
            ownsMessages: true
        )
        self.drain = RequestDrain(maximumBytes: environment.limits.streamWindow + environment.limits.maxMessageSize)
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // An HTTP/2 stream channel's parent is its connection; a channel without one (a test's
        // EmbeddedChannel, which traps on options it does not know) has no stream ID to ask for.
        guard let connection = context.channel.parent else { return }
        if let streamID = try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID) {
            self.logger[metadataKey: "stream"] = "\(Int(streamID))"
        }
        if let peer = connection.remoteAddress {
            self.logger[metadataKey: "peer"] = "\(peer)"
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = Self.unwrapInboundIn(data)
        // While an error status is held, the client's frames are drained (see RequestDrain).
        if self.drain.observe(payload, context: context) { return }
        switch payload {
        case .headers(let headers):
            self.perform(self.machine.receivedHeaders(headers.headers))
            // Clients do not send trailers in gRPC, but END_STREAM on them still ends the request.
            if headers.endStream { self.endOfRequest() }
        case .data(let frame):
            guard self.machine.isReceivingRequest else { return }
            guard case .byteBuffer(let bytes) = frame.data else {
                self.perform(
                    self.machine.fail(GRPCStatus(.internal, "unexpected file region in a received DATA frame"))
                )
                return
            }
            do {
                try self.deframer.process(bytes) { message in try self.handleMessage(message) }
            } catch {
                self.perform(self.machine.fail(StreamStatusMapping.status(for: error)))
                return
            }
            if frame.endStream {
                self.endOfRequest()
            } else {
                self.perform(self.machine.dataFrameProcessed())
            }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let target = self.target, self.machine.readCompleted() {
            target.flush()
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.machine.readRequested() { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.target?.resumeReading()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.drain.stop()
        self.perform(self.machine.clientWentAway())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After the stream has ended, errors are only echoes of its closing.
        guard !self.machine.hasEnded else { return }
        if error is NIOHTTP2Errors.StreamClosed {
            // The client reset the stream (NIO reports this before the channel goes inactive).
            self.perform(self.machine.clientWentAway())
            return
        }
        if let transition = error as? NIOHTTP2Errors.BadStreamStateTransition,
            transition.fromState == .halfClosedRemoteLocalIdle || transition.fromState == .halfClosedRemoteLocalActive
        {
            // A WINDOW_UPDATE NIOHTTP2 queued before the client's END_STREAM and refused after it:
            // nothing is wrong with the stream, which goes on sending its response.
            self.logger.debug(
                "HTTP/2 refused a window update after the client's END_STREAM",
                metadata: ["error": "\(error)"]
            )
            return
        }
        self.logger.debug("HTTP/2 stream error", metadata: ["error": "\(error)"])
        self.perform(self.machine.fail(GRPCStatus(.internal, "HTTP/2 stream error: \(error)")))
    }

    // MARK: - Request

    private func authorize(_ head: GRPCRequestHead) {
        guard let context = self.context else { return }
        let grant: RouterStreamAuthorizer.Grant
        switch self.authorizer.authorize(head, logger: &self.logger) {
        case .failure(let status):
            self.perform(self.machine.fail(status))
            return
        case .success(let granted):
            grant = granted
        }
        self.accounting.admitted(
            route: grant.route.name,
            admission: grant.admission,
            metrics: self.environment.metrics?.route(grant.route.name)
        )
        self.armIdleTimer()
        if let timeout = head.timeoutNanoseconds {
            self.deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(timeout)) {
                self.perform(self.machine.deadlinePassed())
            }
        }
        self.machine.admitted(route: grant.route.name, readOnly: head.readOnly)
        let route = grant.route.target
        self.accounting.targetOpening()
        switch self.opener.open(grant.route, sink: self, on: context.eventLoop, logger: self.logger) {
        case .failure(let status):
            self.perform(self.machine.fail(status))
        case .success(let opening):
            opening.assumeIsolated().whenComplete { result in self.connected(result, target: route) }
        }
    }

    private func connected(_ result: Result<any StreamTarget, any Error>, target description: RouteTarget) {
        let target: any StreamTarget
        switch result {
        case .failure(let error):
            self.perform(self.machine.targetConnectFailed(error, target: description))
            return
        case .success(let connected):
            target = connected
        }
        self.accounting.targetConnected()
        guard let context = self.context, case .bridge(let early) = self.machine.targetConnected() else {
            target.close()
            return
        }
        self.target = target
        self.logger.debug("stream bridged", metadata: ["target": "\(description)"])
        context.writeAndFlush(
            Self.wrapOutboundOut(.headers(.init(headers: GRPCResponseHeaders.initial()))),
            promise: nil
        )
        for payload in early { self.writeToTarget(payload, on: target) }
        if !early.isEmpty { target.flush() }
        let start = self.machine.bridgingStarted()
        self.perform(start.clientEOF)
        if start.read { context.read() }
        // The target's first read was held while the stream was still connecting.
        target.resumeReading()
    }

    private func handleMessage(_ message: ByteBuffer) throws {
        let frame = try RouterFrameCodec.decode(message)
        switch self.machine.receivedMessage(frame) {
        case .none:
            break
        case .writeToTarget(let payload, let restartLinger):
            guard let target = self.target else { return }
            self.writeToTarget(payload, on: target, restartLinger: restartLinger)
        case .reject(let status):
            throw status
        case .ignoreUnknown(let value):
            self.logger.debug("ignored a frame of unknown type", metadata: ["frame-type": "\(value)"])
        }
    }

    private func writeToTarget(_ payload: ByteBuffer, on target: any StreamTarget, restartLinger: Bool = false) {
        guard let promise = self.context?.eventLoop.makePromise(of: Void.self) else { return }
        if self.tracksActivity { self.lastActivity = .now() }
        target.write(payload, promise: promise)
        self.lastTargetWrite = promise.futureResult
        if restartLinger { self.armLinger() }
        let count = payload.readableBytes
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                self.accounting.movedToTarget(count)
            case .failure(let error):
                self.perform(self.machine.targetWriteFailed(error))
            }
        }
    }

    /// END_STREAM: the request is over; it must not end inside a message.
    private func endOfRequest() {
        guard self.machine.isReceivingRequest else { return }
        do {
            try self.deframer.finish()
        } catch {
            self.perform(self.machine.fail(StreamStatusMapping.status(for: error)))
            return
        }
        self.perform(self.machine.requestEnded())
    }

    // MARK: - Target events

    var awaitsTarget: Bool {
        self.machine.phase == .connecting
    }

    var targetMayRead: Bool {
        self.machine.isBridging && (self.context?.channel.isWritable ?? false)
    }

    func targetRead(_ bytes: ByteBuffer) {
        guard self.machine.isBridging, let context = self.context else { return }
        var bytes = bytes
        while bytes.readableBytes > 0 {
            let count = min(bytes.readableBytes, self.environment.limits.maxPayloadSize)
            guard let payload = bytes.readSlice(length: count) else { break }
            self.sendToClient(payload, context: context)
        }
    }

    private func sendToClient(_ payload: ByteBuffer, context: ChannelHandlerContext) {
        let count = payload.readableBytes
        if self.tracksActivity { self.lastActivity = .now() }
        self.accounting.movedFromTarget(count)
        if count <= Self.coalesceLimit {
            var message = context.channel.allocator.buffer(capacity: RouterFrameCodec.maximumPrefixLength + count)
            RouterFrameCodec.encodeDataPrefix(payloadLength: count, into: &message)
            var payload = payload
            message.writeBuffer(&payload)
            context.write(Self.wrapOutboundOut(.data(.init(data: .byteBuffer(message)))), promise: nil)
        } else {
            var prefix = context.channel.allocator.buffer(capacity: RouterFrameCodec.maximumPrefixLength)
            RouterFrameCodec.encodeDataPrefix(payloadLength: count, into: &prefix)
            context.write(Self.wrapOutboundOut(.data(.init(data: .byteBuffer(prefix)))), promise: nil)
            context.write(Self.wrapOutboundOut(.data(.init(data: .byteBuffer(payload)))), promise: nil)
        }
    }

    func targetReadComplete() {
        self.context?.flush()
    }

    func targetReachedEOF() {
        self.perform(self.machine.targetReachedEOF())
    }

    func targetClosed(error: (any Error)?) {
        self.target = nil
        self.perform(self.machine.targetClosed(error: error))
    }

    func targetWritabilityChanged(isWritable: Bool) {
        if self.machine.targetWritabilityChanged(isWritable: isWritable) {
            self.context?.read()
        }
    }

    // MARK: - Actions

    private func perform(_ action: RouterStreamStateMachine.Action) {
        switch action {
        case .none:
            break
        case .refuseNonGRPC(let status, let reason):
            self.refuse(httpStatus: status, reason: reason)
        case .authorize(let head):
            self.authorize(head)
        case .finishTargetInput(let then):
            self.target?.finishInput(after: self.lastTargetWrite)
            self.perform(then)
        case .sendGoaway(let armLinger, let then):
            self.sendGoaway()
            if armLinger { self.armLinger() }
            self.perform(then)
        case .rearmIdleTimer:
            self.armIdleTimer()
        case .end(let ending):
            self.perform(ending)
        case .cancel(let status):
            // Nothing can be sent back: close the target at once.
            self.cancelTimers()
            self.closeTarget()
            self.accounting.record(status, environment: self.environment, logger: self.logger)
        }
    }

    private func perform(_ ending: RouterStreamStateMachine.Ending) {
        switch ending {
        case .none:
            break
        case .awaitLastWrite(let sequence, let status):
            // Ends the RPC only once every byte accepted from the client has reached the target.
            guard let last = self.lastTargetWrite else {
                self.perform(self.machine.lastWriteCompleted(sequence: sequence, succeeded: true, status: status))
                return
            }
            last.assumeIsolated().whenComplete { result in
                let succeeded: Bool
                if case .success = result { succeeded = true } else { succeeded = false }
                self.perform(self.machine.lastWriteCompleted(sequence: sequence, succeeded: succeeded, status: status))
            }
        case .complete(let status, let trailersOnly):
            self.complete(status, trailersOnly: trailersOnly)
        }
    }

    private func refuse(httpStatus status: Int, reason: String) {
        guard let context = self.context else { return }
        self.logger.warning(
            "refused a non-gRPC request",
            metadata: ["http-status": "\(status)", "reason": "\(reason)"]
        )
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(
            Self.wrapOutboundOut(
                .headers(.init(headers: GRPCResponseHeaders.httpError(status: status), endStream: true))
            ),
            promise: promise
        )
        promise.futureResult.assumeIsolated().whenComplete { _ in Self.resetIfOpen(context) }
    }

    private func sendGoaway() {
        guard let context = self.context else { return }
        // Everything read before the EOF goes out first.
        var message = context.channel.allocator.buffer(capacity: 8)
        RouterFrameCodec.encodeControl(.goaway, into: &message)
        context.writeAndFlush(Self.wrapOutboundOut(.data(.init(data: .byteBuffer(message)))), promise: nil)
    }

    /// Jumpstarter's peers may never end the RPC after GOAWAY: once the target is done, a client
    /// that stays silent for the linger time gets status OK. Every payload from the client
    /// starts the wait again, so a client still sending is never cut short.
    private func armLinger() {
        guard let context = self.context else { return }
        self.lingerTimer?.cancel()
        self.lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.environment.linger) {
            self.logger.debug("client did not end the RPC within the linger time after GOAWAY")
            self.perform(self.machine.lingerExpired())
        }
    }

    private func complete(_ status: GRPCStatus, trailersOnly: Bool) {
        guard let context = self.context else { return }
        self.cancelTimers()
        let headers = trailersOnly ? GRPCResponseHeaders.trailersOnly(status) : GRPCResponseHeaders.trailers(status)
        // The trailers go out at once on success; after an error, once a client still sending has
        // paused or ended its side, or it would report INTERNAL instead (see RequestDrain). Then a
        // client that has not ended its side gets RST_STREAM(NO_ERROR).
        self.drain.send(trailers: headers, immediately: status.code == .ok, context: context, logger: self.logger)
        self.closeTarget()
        self.accounting.record(status, environment: self.environment, logger: self.logger)
    }

    private static func resetIfOpen(_ context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        context.writeAndFlush(Self.wrapOutboundOut(.rstStream(.noError)), promise: nil)
    }

    private func closeTarget() {
        if let target = self.target {
            self.target = nil
            target.close()
        }
    }

    /// `idle-timeout`: a stream that moves no payload byte either way for that long ends with
    /// DEADLINE_EXCEEDED. The timer is re-armed lazily, not on every byte.
    private func armIdleTimer() {
        guard let timeout = self.environment.limits.idleTimeout, let context = self.context else { return }
        self.idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: self.lastActivity + timeout) {
            let idle = NIODeadline.now() - self.lastActivity >= timeout
            self.perform(self.machine.idleTimerFired(idle: idle, timeout: timeout))
        }
    }

    private func cancelTimers() {
        self.idleTimer?.cancel()
        self.idleTimer = nil
        self.deadline?.cancel()
        self.deadline = nil
        self.lingerTimer?.cancel()
        self.lingerTimer = nil
    }
}
