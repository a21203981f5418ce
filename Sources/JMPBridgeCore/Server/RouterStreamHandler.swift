import JMPProtocol
import JMPTargets
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// Serves one `jumpstarter.v1.RouterService/Stream` call on one HTTP/2 stream channel and bridges
/// it to the route's target, both channels on the same event loop.
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
/// that says what failed.
final class RouterStreamHandler: ChannelDuplexHandler, TargetSink {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private enum Phase {
        case awaitingHeaders
        case connecting
        case bridging
        case finished
    }

    /// Payloads up to this size are copied next to their prefix (one DATA frame); larger ones are
    /// sent as the buffer they were read into.
    private static let coalesceLimit = 4096

    private let environment: StreamEnvironment
    private let security: ListenerSecurity
    private let connection: ConnectionStreams
    private var logger: Logger
    private var phase = Phase.awaitingHeaders
    private var context: ChannelHandlerContext?
    private var deframer: GRPCMessageDeframer

    private var routeName = "-"
    /// Payloads received while the target connection is being made (bounded by the stream window).
    private var early: [ByteBuffer] = []
    private var target: (any StreamTarget)?
    private var targetWritable = true
    private var targetNeedsFlush = false
    private var lastTargetWrite: EventLoopFuture<Void>?
    private var readPending = false

    private var responseStarted = false
    /// The client said it will send no more (GOAWAY or END_STREAM).
    private var clientDone = false
    /// The client's EOF was passed on to the target.
    private var clientEOFPropagated = false
    /// The target reached EOF and GOAWAY was sent to the client.
    private var targetDone = false
    /// The target's channel is closed.
    private var targetGone = false
    private var finishing = false
    /// `jmp-attach: ro`: input from the client is refused.
    private var readOnly = false
    /// The stream's places in the stream limits, held until it ends.
    private var admission: StreamAdmission?
    /// The last payload byte either way, for the idle timeout (kept only with one).
    private var lastActivity = NIODeadline.now()
    private let tracksActivity: Bool
    private var idleTimer: Scheduled<Void>?

    private var deadline: Scheduled<Void>?
    /// Sends the final status; after an error, once the client has stopped sending (RequestDrain).
    private let drain: RequestDrain
    private var lingerTimer: Scheduled<Void>?
    private var bytesToTarget = 0
    private var bytesFromTarget = 0
    private let started = NIODeadline.now()

    init(environment: StreamEnvironment, security: ListenerSecurity, connection: ConnectionStreams) {
        self.environment = environment
        self.security = security
        self.connection = connection
        self.tracksActivity = environment.limits.idleTimeout != nil
        self.logger = environment.logger
        self.deframer = GRPCMessageDeframer(
            maximumMessageLength: environment.limits.maxMessageSize,
            ownsMessages: true
        )
        self.drain = RequestDrain(
            maximumBytes: environment.limits.streamWindow + environment.limits.maxMessageSize
        )
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let streamID = try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID) {
            self.logger[metadataKey: "stream"] = "\(Int(streamID))"
        }
        if let peer = context.channel.parent?.remoteAddress {
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
            if self.phase == .awaitingHeaders {
                self.start(headers: headers.headers, context: context)
            }
            // Clients do not send trailers in gRPC, but END_STREAM on them still ends the request.
            if headers.endStream { self.endOfRequest() }
        case .data(let frame):
            guard self.phase == .connecting || self.phase == .bridging else { return }
            guard case .byteBuffer(let bytes) = frame.data else {
                self.fail(GRPCStatus(.internal, "unexpected file region in a received DATA frame"))
                return
            }
            do {
                try self.deframer.process(bytes) { message in try self.handleMessage(message) }
            } catch {
                self.fail(Self.status(for: error))
                return
            }
            if frame.endStream {
                self.endOfRequest()
            } else if self.clientDone {
                self.propagateClientEOF()
            }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.targetNeedsFlush, let target = self.target {
            self.targetNeedsFlush = false
            target.flush()
        }
    }

    func read(context: ChannelHandlerContext) {
        switch self.phase {
        case .connecting:
            self.readPending = true
        case .bridging where !self.targetWritable:
            self.readPending = true
        default:
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.target?.resumeReading()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.drain.stop()
        self.clientWentAway()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After the stream has ended, errors are only echoes of its closing.
        guard self.phase != .finished else { return }
        if error is NIOHTTP2Errors.StreamClosed {
            // The client reset the stream (NIO reports this before the channel goes inactive).
            self.clientWentAway()
            return
        }
        self.logger.debug("HTTP/2 stream error", metadata: ["error": "\(error)"])
        self.fail(GRPCStatus(.internal, "HTTP/2 stream error: \(error)"))
    }

    /// The client reset the stream or its connection went away: nothing can be sent back, so
    /// close the target at once and record the stream as cancelled.
    private func clientWentAway() {
        guard self.phase != .finished else { return }
        self.phase = .finished
        self.cancelTimers()
        self.early = []
        self.closeTarget()
        self.record(GRPCStatus(.cancelled, "the client cancelled the stream"))
    }

    // MARK: - Request

    private func start(headers: HPACKHeaders, context: ChannelHandlerContext) {
        let head: GRPCRequestHead
        switch GRPCRequestHead.parse(headers) {
        case .failure(.http(let status, let reason)):
            self.phase = .finished
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
            return
        case .failure(.grpc(let status)):
            self.fail(status)
            return
        case .success(let parsed):
            head = parsed
        }
        if let route = head.route { self.routeName = route }
        self.logger[metadataKey: "route"] = "\(head.route ?? "(default)")"

        // Authentication first: a client without a valid token learns nothing about the routes.
        let table = self.environment.routes.withLockedValue { $0 }
        if let verifier = self.security.verifier {
            let claims: RouterTokenClaims
            switch verifier.verify(authorization: head.authorization) {
            case .failure(let status):
                self.fail(status)
                return
            case .success(let verified):
                claims = verified
            }
            if let subject = claims.sub?.value { self.logger[metadataKey: "subject"] = "\(subject)" }
            if let bound = claims.route, bound != head.route ?? table.defaultRoute {
                self.fail(GRPCStatus(.permissionDenied, "the token is bound to route '\(bound)'"))
                return
            }
        }

        let route: RouteConfiguration
        switch table.resolve(head.route) {
        case .failure(let status):
            self.fail(status)
            return
        case .success(let resolved):
            route = resolved
        }
        self.routeName = route.name
        self.logger[metadataKey: "route"] = "\(route.name)"
        switch StreamAdmission.admit(route: route, environment: self.environment, connection: self.connection) {
        case .failure(let status):
            self.fail(status)
            return
        case .success(let admission):
            self.admission = admission
        }
        self.armIdleTimer()

        if let timeout = head.timeoutNanoseconds {
            self.deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(timeout)) {
                self.fail(GRPCStatus(.deadlineExceeded, "the client's deadline (grpc-timeout) passed"))
            }
        }

        self.phase = .connecting
        self.readOnly = head.readOnly
        switch route.target {
        case .unix(let path):
            let handler = TargetChannelHandler(sink: self)
            let connector = UnixSocketConnector(
                path: path,
                maxReadSize: self.environment.limits.maxPayloadSize,
                connectTimeout: route.connectTimeout
            )
            connector.connect(on: context.eventLoop, handler: handler, logger: self.logger).assumeIsolated()
                .whenComplete { result in
                    self.connected(
                        result.map { SocketStreamTarget(channel: $0, handler: handler) },
                        target: route.target
                    )
                }
        case .pty, .serial:
            guard let hub = self.environment.consoles.withLockedValue({ $0[route.name] }) else {
                self.fail(GRPCStatus(.unavailable, "route '\(route.name)': the console is not open"))
                return
            }
            ConsoleStreamTarget.attach(to: hub, sink: self, on: context.eventLoop).assumeIsolated().whenComplete {
                result in
                self.connected(result.map { $0 }, target: route.target)
            }
        }
    }

    private func connected(_ result: Result<any StreamTarget, any Error>, target description: RouteTarget) {
        guard self.phase == .connecting, let context = self.context else {
            if case .success(let target) = result { target.close() }
            return
        }
        switch result {
        case .failure(let error as ConsoleUnavailable):
            self.fail(GRPCStatus(.unavailable, error.reason))
        case .failure(let error):
            self.fail(
                GRPCStatus(
                    .unavailable,
                    "route '\(self.routeName)': cannot connect to \(description): \(describeSocketError(error))"
                )
            )
        case .success(let target):
            self.target = target
            self.phase = .bridging
            self.logger.debug("stream bridged", metadata: ["target": "\(description)"])
            self.responseStarted = true
            context.writeAndFlush(
                Self.wrapOutboundOut(.headers(.init(headers: GRPCResponseHeaders.initial()))),
                promise: nil
            )
            let early = self.early
            self.early = []
            for payload in early { self.writeToTarget(payload, on: target) }
            if self.targetNeedsFlush {
                self.targetNeedsFlush = false
                target.flush()
            }
            if self.clientDone { self.propagateClientEOF() }
            if self.readPending && self.targetWritable {
                self.readPending = false
                context.read()
            }
            // The target's first read was held while the stream was still connecting.
            target.resumeReading()
        }
    }

    private func handleMessage(_ message: ByteBuffer) throws {
        let frame = try RouterFrameCodec.decode(message)
        switch frame.type {
        case .data:
            guard frame.payload.readableBytes > 0 else { return }
            guard !self.clientDone else {
                throw GRPCStatus(.invalidArgument, "DATA frame after the client's GOAWAY")
            }
            guard !self.readOnly else {
                throw GRPCStatus(
                    .permissionDenied,
                    "route '\(self.routeName)': this attachment is read-only (jmp-attach: ro)"
                )
            }
            if self.phase == .connecting {
                self.early.append(frame.payload)
            } else if let target = self.target, !self.targetGone {
                self.writeToTarget(frame.payload, on: target)
            } else {
                throw GRPCStatus(
                    .unavailable,
                    "route '\(self.routeName)': the target closed the connection; \(frame.payload.readableBytes) bytes could not be delivered"
                )
            }
        case .goaway:
            // Acted on once the whole DATA frame is processed (see propagateClientEOF()).
            self.clientDone = true
        case .ping:
            break
        case .rstStream:
            throw GRPCStatus(.cancelled, "the client aborted the stream (RST_STREAM frame)")
        case .unknown(let value):
            self.logger.debug("ignored a frame of unknown type", metadata: ["frame-type": "\(value)"])
        }
    }

    private func writeToTarget(_ payload: ByteBuffer, on target: any StreamTarget) {
        guard let promise = self.context?.eventLoop.makePromise(of: Void.self) else { return }
        if self.tracksActivity { self.lastActivity = .now() }
        target.write(payload, promise: promise)
        self.lastTargetWrite = promise.futureResult
        self.targetNeedsFlush = true
        if self.lingerTimer != nil { self.armLinger() }
        let count = payload.readableBytes
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                self.bytesToTarget += count
            case .failure(let error):
                self.fail(
                    GRPCStatus(
                        .unavailable,
                        "route '\(self.routeName)': writing to the target failed: \(describeSocketError(error))"
                    )
                )
            }
        }
    }

    /// END_STREAM: the request is over; it must not end inside a message.
    private func endOfRequest() {
        guard self.phase == .connecting || self.phase == .bridging else { return }
        do {
            try self.deframer.finish()
        } catch {
            self.fail(Self.status(for: error))
            return
        }
        self.clientDone = true
        self.propagateClientEOF()
    }

    /// The client will send no more: pass EOF on to the target once everything before it is
    /// written. While connecting, ``connected(_:target:)`` does it.
    private func propagateClientEOF() {
        guard self.phase == .bridging, !self.clientEOFPropagated else { return }
        self.clientEOFPropagated = true
        self.shutdownTargetOutput()
        self.finishIfDone()
    }

    private func shutdownTargetOutput() {
        guard let target = self.target, !self.targetGone else { return }
        self.targetNeedsFlush = false
        target.finishInput(after: self.lastTargetWrite)
    }

    // MARK: - Target events

    var targetMayRead: Bool {
        self.phase == .bridging && (self.context?.channel.isWritable ?? false)
    }

    func targetRead(_ bytes: ByteBuffer) {
        guard self.phase == .bridging, let context = self.context else { return }
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
        self.bytesFromTarget += count
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
        guard self.phase == .bridging, !self.targetDone, let context = self.context else { return }
        // Everything read before the EOF goes out first.
        self.targetDone = true
        var message = context.channel.allocator.buffer(capacity: 8)
        RouterFrameCodec.encodeControl(.goaway, into: &message)
        context.writeAndFlush(Self.wrapOutboundOut(.data(.init(data: .byteBuffer(message)))), promise: nil)
        self.armLinger()
        self.finishIfDone()
    }

    /// Jumpstarter's peers may never end the RPC after GOAWAY: once the target is done, a client
    /// that stays silent for the linger time gets status OK. Every payload from the client
    /// starts the wait again, so a client still sending is never cut short.
    private func armLinger() {
        guard self.targetDone, !self.clientDone, self.phase == .bridging, let context = self.context else { return }
        self.lingerTimer?.cancel()
        self.lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.environment.linger) {
            self.logger.debug("client did not end the RPC within the linger time after GOAWAY")
            self.finish(.ok)
        }
    }

    func targetClosed(error: (any Error)?) {
        self.targetGone = true
        self.target = nil
        // A console can cut an attachment before the attach's own completion has reached this
        // loop (the console closed, say, by a reload that removed its route): fail now, or the
        // stream would be bridged to a target that is already gone.
        if self.phase == .connecting, let error = error as? ConsoleUnavailable {
            self.fail(GRPCStatus(error.lagged ? .resourceExhausted : .unavailable, error.reason))
            return
        }
        guard self.phase == .bridging else { return }
        if let error = error as? ConsoleUnavailable {
            self.fail(GRPCStatus(error.lagged ? .resourceExhausted : .unavailable, error.reason))
        } else if let error {
            self.fail(
                GRPCStatus(
                    .unavailable,
                    "route '\(self.routeName)': target connection failed: \(describeSocketError(error))"
                )
            )
        } else {
            // A clean close is the target's EOF (NIO reports no separate EOF when our side was
            // already shut down). Data the client sends after this fails the stream.
            self.targetReachedEOF()
            self.finishIfDone()
        }
    }

    func targetWritabilityChanged(isWritable: Bool) {
        self.targetWritable = isWritable
        if isWritable, self.readPending, self.phase == .bridging, let context = self.context {
            self.readPending = false
            context.read()
        }
    }

    // MARK: - Ending

    private func finishIfDone() {
        if self.clientDone && self.targetDone { self.finish(.ok) }
    }

    /// Ends the RPC with OK once every byte accepted from the client has reached the target.
    private func finish(_ status: GRPCStatus) {
        guard self.phase != .finished, !self.finishing else { return }
        if let last = self.lastTargetWrite, !self.targetGone {
            self.finishing = true
            last.assumeIsolated().whenComplete { result in
                self.finishing = false
                guard case .success = result else { return }  // the failure already failed the stream
                if self.lastTargetWrite === last {
                    self.complete(status)
                } else {
                    self.finish(status)  // more was written meanwhile: wait for that too
                }
            }
        } else {
            self.complete(status)
        }
    }

    /// Ends the RPC at once with an error status.
    private func fail(_ status: GRPCStatus) {
        self.complete(status)
    }

    private func complete(_ status: GRPCStatus) {
        guard self.phase != .finished, let context = self.context else { return }
        self.phase = .finished
        self.cancelTimers()
        self.early = []
        let headers =
            self.responseStarted ? GRPCResponseHeaders.trailers(status) : GRPCResponseHeaders.trailersOnly(status)
        // The trailers go out at once on success; after an error, once a client still sending has
        // paused or ended its side, or it would report INTERNAL instead (see RequestDrain). Then a
        // client that has not ended its side gets RST_STREAM(NO_ERROR).
        self.drain.send(trailers: headers, immediately: status.code == .ok, context: context, logger: self.logger)
        self.closeTarget()
        self.record(status)
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
            guard self.phase == .connecting || self.phase == .bridging else { return }
            if NIODeadline.now() - self.lastActivity >= timeout {
                self.fail(
                    GRPCStatus(
                        .deadlineExceeded,
                        "no payload either way for \(timeout.nanoseconds / 1_000_000) ms (idle-timeout)"
                    )
                )
            } else {
                self.armIdleTimer()
            }
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

    private func record(_ status: GRPCStatus) {
        let statistics = self.environment.statistics
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
            self.logger.info("stream finished", metadata: metadata)
        case .cancelled:
            self.logger.info("stream cancelled", metadata: metadata)
        default:
            statistics.failedStreams.add(1, ordering: .relaxed)
            self.logger.warning("stream failed", metadata: metadata)
        }
    }

    static func status(for error: any Error) -> GRPCStatus {
        switch error {
        case let status as GRPCStatus:
            return status
        case GRPCDeframingError.messageTooLarge(let length, let limit):
            return GRPCStatus(.resourceExhausted, "message of \(length) bytes exceeds the limit of \(limit) bytes")
        case GRPCDeframingError.compressedWithoutEncoding:
            return GRPCStatus(.internal, "compressed message on a stream without grpc-encoding")
        case GRPCDeframingError.truncated(let missing):
            return GRPCStatus(.internal, "request ended inside a message (\(missing) bytes missing)")
        case let error as RouterFrameDecodingError:
            return GRPCStatus(.internal, "malformed StreamRequest: \(error.reason)")
        default:
            return GRPCStatus(.internal, "\(error)")
        }
    }
}
