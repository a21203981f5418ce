import JMPProtocol
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One stream an exporter opened on the gateway listener, relayed to the controller or, for a
/// `RouterService/Stream` with a token the gateway handed out, to that token's router.
///
/// Frames pass both ways as they arrive: HEADERS (only `:authority` and `:scheme` rewritten for
/// the upstream server), DATA (not re-encoded, except `ListenResponse`s: ``ListenInterception``),
/// trailers and RST_STREAM, half-close kept. Neither side is read while the other cannot take
/// more, so both HTTP/2 windows close: backpressure end to end. Statuses the gateway makes itself
/// are listed in docs/WIRE.md ("The gateway").
///
/// A call the upstream server refuses before processing it (its stream above the last one a
/// GOAWAY lets finish, or reset with REFUSED_STREAM) is sent again on a new stream, as gRPC
/// clients retry such calls transparently: until the server's first frame the handler keeps
/// what it sent (at most ``retryBufferLimit`` bytes of DATA), up to ``maximumAttempts`` in all.
final class GatewayStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    static let routerStreamPath = "/jumpstarter.v1.RouterService/Stream"
    static let listenPath = "/jumpstarter.v1.ControllerService/Listen"

    private enum Phase {
        case awaitingHeaders
        case opening
        case relaying(UpstreamStreamHandler)
        case closed
    }

    private enum Kind {
        case controller
        case listen(ListenInterception)
        case relay(RelayRecord)
    }

    /// DATA bytes kept for a retry at most: past them the call is not retried.
    static let retryBufferLimit = 64 * 1024
    /// Attempts at most for a call the upstream refuses unprocessed, the first one included.
    static let maximumAttempts = 5

    private let gateway: Gateway
    private var context: ChannelHandlerContext?
    private var phase = Phase.awaitingHeaders
    private var kind = Kind.controller
    private var upstream = Gateway.Upstream.controller
    private var upstreamName = ""
    /// What went upstream on this attempt while the server may still refuse it unprocessed;
    /// nil once the server sent a frame or more than ``retryBufferLimit`` bytes went.
    private var sentForRetry: [HTTP2Frame.FramePayload]? = []
    private var sentForRetryBytes = 0
    private var attempt = 1
    /// The upstream refused this attempt before processing it (GOAWAY, REFUSED_STREAM).
    private var refusedUnprocessed = false
    /// Frames that arrived while the upstream stream was being opened.
    private var held: [HTTP2Frame.FramePayload] = []
    private var readPending = false
    /// Frames were written upstream since the exporter's last read completed.
    private var upstreamFlushPending = false
    /// Frames were written downstream since the upstream's last read completed.
    private var downstreamFlushPending = false
    /// The response's HEADERS have been written downstream.
    private var responseStarted = false
    /// The response is complete downstream (END_STREAM or RST_STREAM written).
    private var responseEnded = false
    /// Completes once the upstream's END_STREAM has gone out downstream: frames may wait there
    /// for the exporter's flow-control window, and a reset written meanwhile would go first.
    private var responseEndWritten: EventLoopFuture<Void>?
    /// The exporter ended its side (END_STREAM or RST_STREAM).
    private var requestEnded = false
    /// The exporter reset the call (RST_STREAM): it wants nothing more, status included.
    private var exporterReset = false
    /// How the call ended, for the relay's log line.
    private var outcome: String?
    /// The upstream's end of the call never came (``upstreamClosed()``): its bytes in flight are
    /// gone, and the relay's end is logged as a warning.
    private var lost = false
    /// The id under which a controller call is registered for draining.
    private var controllerCallID: Int?
    /// Sends the statuses the gateway makes itself once the exporter has stopped sending: a
    /// grpcio client still writing would report INTERNAL instead (see RequestDrain).
    private let drain: RequestDrain

    init(gateway: Gateway) {
        self.gateway = gateway
        self.drain = RequestDrain(maximumBytes: gateway.requestDrainBytes)
    }

    var downstreamWritable: Bool { self.context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: - Downstream (the exporter)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = self.unwrapInboundIn(data)
        switch payload {
        case .headers, .data, .rstStream:
            break
        default:
            // Not the call's but this hop's: above all the exporter's stream-level WINDOW_UPDATE,
            // which NIOHTTP2 hands the stream. It opens the gateway's window; passed on, it would
            // give the upstream server credit for bytes the gateway has not read (the relay's
            // memory no longer bounded by the stream window), and after the server's trailers
            // NIOHTTP2 would refuse it and reset a finished call. docs/WIRE.md, "The gateway".
            return
        }
        if self.drain.observe(payload, context: context) {
            // Discarded while the gateway's own status waits for the exporter to stop sending.
            self.note(ending: payload)
            return
        }
        switch self.phase {
        case .awaitingHeaders:
            guard case .headers(let headers) = payload else {
                context.close(promise: nil)
                return
            }
            self.begin(headers, context: context)
        case .opening:
            self.note(payload)
            self.held.append(payload)
        case .relaying(let upstream):
            self.note(payload)
            upstream.write(payload)
            self.keepForRetry(payload)
            self.upstreamFlushPending = true
        case .closed:
            self.note(ending: payload)
        }
    }

    /// Notes the exporter's end of its side in a frame the gateway does not pass on.
    private func note(ending payload: HTTP2Frame.FramePayload) {
        if payload.endsStream { self.requestEnded = true }
        if case .rstStream = payload { self.exporterReset = true }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .relaying(let upstream) = self.phase, self.upstreamFlushPending {
            self.upstreamFlushPending = false
            upstream.flush()
        }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        switch self.phase {
        case .awaitingHeaders, .closed:
            context.read()
        case .relaying(let upstream) where upstream.isWritable:
            context.read()
        default:
            self.readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .relaying(let upstream) = self.phase {
            upstream.resumeReading()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.gateway.logger.debug("gateway: stream error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.drain.stop()
        if let id = self.controllerCallID { self.gateway.unregisterControllerCall(id) }
        if case .relaying(let upstream) = self.phase { upstream.close() }
        self.phase = .closed
        self.held = []
        switch self.kind {
        case .relay(let record):
            if self.outcome == nil {
                self.outcome = self.requestEnded && !self.exporterReset ? "incomplete" : "CANCELLED (exporter)"
            }
            self.logRelayEnd(record)
            self.gateway.ended(record)
        case .listen(let listen):
            self.gateway.ended(listen.record)
        case .controller:
            break
        }
        context.fireChannelInactive()
    }

    /// Keeps track of the exporter's side: bytes, its end, the Listen request's lease.
    private func note(_ payload: HTTP2Frame.FramePayload) {
        if case .data(let data) = payload, case .byteBuffer(let buffer) = data.data {
            switch self.kind {
            case .relay(let record): record.bytesToRouter.add(buffer.readableBytes, ordering: .relaxed)
            case .listen(var listen):
                listen.request(buffer)
                self.kind = .listen(listen)
            case .controller: break
            }
        }
        self.note(ending: payload)
    }

    private func begin(_ headers: HTTP2Frame.FramePayload.Headers, context: ChannelHandlerContext) {
        let path = headers.headers.first(name: ":path") ?? ""
        let endpoint: UpstreamEndpoint
        let trust: UpstreamTrust
        if path == Self.routerStreamPath {
            // More than one authorization value: refused before the book is asked, so neither
            // value reaches the router and a handed-out token among them stays usable.
            guard headers.headers["authorization"].count <= 1 else {
                self.refuseRouterStream(
                    headers,
                    log: "gateway: refused a router stream with more than one authorization header",
                    message: "jmp-bridge gateway: more than one authorization header"
                )
                return
            }
            guard let token = Self.bearerToken(headers.headers), let grant = self.gateway.tokens.take(token) else {
                self.refuseRouterStream(
                    headers,
                    log:
                        "gateway: refused a router stream whose token the gateway did not hand out (or was used or expired)",
                    message: "jmp-bridge gateway: unknown router token"
                )
                return
            }
            let record = RelayRecord(id: self.gateway.makeID(), grant: grant)
            self.gateway.started(record)
            self.kind = .relay(record)
            self.upstream = .router(grant.router)
            endpoint = grant.router
            trust = self.gateway.settings.effectiveRouterTrust
        } else {
            let id = self.gateway.makeID()
            guard self.gateway.registerControllerCall(id, NIOLoopBound(self, eventLoop: context.eventLoop)) else {
                self.phase = .closed
                self.requestEnded = headers.endStream
                self.respond(GRPCStatus(.unavailable, "jmp-bridge gateway: stopping"))
                return
            }
            self.controllerCallID = id
            self.gateway.statistics.controllerCalls.add(1, ordering: .relaxed)
            if path == Self.listenPath {
                let namespace = headers.headers.first(name: "jumpstarter-namespace") ?? "-"
                let name = headers.headers.first(name: "jumpstarter-name") ?? "-"
                let record = ListenRecord(id: self.gateway.makeID(), exporter: "\(namespace)/\(name)")
                self.gateway.started(record)
                self.kind = .listen(ListenInterception(record: record))
            }
            self.upstream = .controller
            endpoint = self.gateway.settings.controller
            trust = self.gateway.settings.controllerTrust
        }
        self.upstreamName = "\(endpoint)"
        var forwarded = headers
        forwarded.headers = Self.upstreamHeaders(
            headers.headers,
            authority: endpoint.authority,
            scheme: trust == .insecure ? "http" : "https"
        )
        self.note(.headers(forwarded))
        self.held = [.headers(forwarded)]
        self.phase = .opening
        self.openUpstream(on: context.eventLoop)
    }

    /// Opens the upstream stream; the frames in ``held`` go first once it is open.
    private func openUpstream(on eventLoop: any EventLoop) {
        let partner = UpstreamStreamHandler(partner: self)
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        let boundPartner = NIOLoopBound(partner, eventLoop: eventLoop)
        self.gateway.openStream(self.upstream) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(boundPartner.value)
            }
        }.whenComplete { result in
            switch result {
            case .success: handler.value.upstreamOpened(boundPartner.value)
            case .failure(let error): handler.value.upstreamFailed(error)
            }
        }
    }

    private func upstreamOpened(_ upstream: UpstreamStreamHandler) {
        guard case .opening = self.phase, let context = self.context else {
            upstream.close()
            return
        }
        self.phase = .relaying(upstream)
        for payload in self.held {
            upstream.write(payload)
            self.keepForRetry(payload)
        }
        self.held = []
        upstream.flush()
        if self.readPending, upstream.isWritable {
            self.readPending = false
            context.read()
        }
    }

    private func upstreamFailed(_ error: any Error) {
        guard case .opening = self.phase else { return }
        self.phase = .closed
        self.held = []
        self.gateway.statistics.upstreamUnavailable.add(1, ordering: .relaxed)
        let status = GRPCStatus(.unavailable, "jmp-bridge gateway: \(error)")
        self.gateway.logger.warning("gateway: call failed, upstream unavailable", metadata: ["error": "\(error)"])
        self.outcome = status.description
        self.respond(status)
        if self.readPending, let context = self.context {
            self.readPending = false
            context.read()
        }
    }

    // MARK: - Upstream (the controller or a router)

    func fromUpstream(_ payload: HTTP2Frame.FramePayload) {
        guard let context = self.context else { return }
        if self.sentForRetry != nil {
            if case .rstStream(.refusedStream) = payload {
                // Refused unprocessed: sent again once the stream has closed (upstreamClosed).
                self.refusedUnprocessed = true
                return
            }
            // The server has the call: it is not sent again.
            self.sentForRetry = nil
        }
        if self.responseEnded {
            // After its trailers a server resets a stream whose client has not ended its side;
            // the reset follows them once they are out (NIOHTTP2 sends a reset ahead of frames
            // still waiting for the exporter's window, and drops those).
            if case .rstStream = payload, !self.requestEnded, let written = self.responseEndWritten {
                written.assumeIsolated().whenComplete { _ in
                    guard context.channel.isActive else { return }
                    context.writeAndFlush(self.wrapOutboundOut(payload), promise: nil)
                }
            }
            return
        }
        switch payload {
        case .headers(let headers):
            self.responseStarted = true
            if headers.endStream {
                self.responseEnded = true
                self.outcome = Self.statusName(headers.headers.first(name: "grpc-status"))
                self.writeResponseEnd(payload, context: context)
            } else {
                context.write(self.wrapOutboundOut(payload), promise: nil)
            }
        case .data(var data):
            if data.endStream { self.responseEnded = true }
            switch self.kind {
            case .relay(let record):
                record.bytesToExporter.add(data.data.readableBytes, ordering: .relaxed)
            case .listen(var listen):
                guard case .byteBuffer(let bytes) = data.data else { break }
                do {
                    let rewritten = try listen.response(bytes, endStream: data.endStream, gateway: self.gateway)
                    self.kind = .listen(listen)
                    guard rewritten.readableBytes > 0 || data.endStream else { return }
                    data.data = .byteBuffer(rewritten)
                } catch {
                    self.kind = .listen(listen)
                    self.failListen(error)
                    return
                }
            case .controller:
                break
            }
            if data.endStream {
                self.writeResponseEnd(.data(data), context: context)
            } else {
                context.write(self.wrapOutboundOut(.data(data)), promise: nil)
            }
        case .rstStream(let code):
            self.responseEnded = true
            self.outcome = "RST_STREAM(\(code))"
            context.write(self.wrapOutboundOut(payload), promise: nil)
        default:
            return
        }
        self.downstreamFlushPending = true
    }

    /// Writes the upstream's END_STREAM frame downstream, noting when it has gone out.
    private func writeResponseEnd(_ payload: HTTP2Frame.FramePayload, context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        self.responseEndWritten = promise.futureResult
        context.write(self.wrapOutboundOut(payload), promise: promise)
    }

    func upstreamReadComplete() {
        guard self.downstreamFlushPending, let context = self.context else { return }
        self.downstreamFlushPending = false
        context.flush()
    }

    func resumeDownstreamReading() {
        guard self.readPending, let context = self.context else { return }
        self.readPending = false
        context.read()
    }

    private var upstreamFailure: (any Error)?

    /// The upstream stream failed with `error`; `refused`: the server did not process it.
    func upstreamError(_ error: any Error, refused: Bool) {
        self.upstreamFailure = error
        if refused, self.sentForRetry != nil { self.refusedUnprocessed = true }
    }

    /// The upstream stream ended because its connection closed (`lost` says how): the reason
    /// of a call that had no end of its own.
    func upstreamConnectionClosed(_ lost: UpstreamConnectionLost) {
        if self.upstreamFailure == nil { self.upstreamFailure = lost }
    }

    /// Keeps a copy of `payload`, sent upstream, while this attempt may yet be refused.
    private func keepForRetry(_ payload: HTTP2Frame.FramePayload) {
        guard self.sentForRetry != nil else { return }
        if case .data(let data) = payload { self.sentForRetryBytes += data.data.readableBytes }
        if self.sentForRetryBytes > Self.retryBufferLimit {
            self.sentForRetry = nil
        } else {
            self.sentForRetry?.append(payload)
        }
    }

    /// Sends the call again on a new upstream stream, after the server refused `refused`
    /// unprocessed. It waits for the event loop's next turn: the GOAWAY that refused it is
    /// still being read, and only then does the pool stop using that connection.
    private func retry(_ refused: [HTTP2Frame.FramePayload], context: ChannelHandlerContext) {
        self.attempt += 1
        self.refusedUnprocessed = false
        self.upstreamFailure = nil
        self.sentForRetry = []
        self.sentForRetryBytes = 0
        // Frames the exporter sends meanwhile are held behind these.
        self.held = refused
        self.phase = .opening
        self.gateway.statistics.retriedCalls.add(1, ordering: .relaxed)
        self.gateway.logger.info(
            "gateway: upstream refused a call unprocessed (GOAWAY or REFUSED_STREAM); sending it again",
            metadata: ["upstream": "\(self.upstreamName)", "attempt": "\(self.attempt)"]
        )
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = handler.value
            guard case .opening = handler.phase, let context = handler.context else { return }
            handler.openUpstream(on: context.eventLoop)
        }
    }

    /// The upstream stream is gone. If its response was not complete (the connection was lost,
    /// or the stream was reset without a frame), the exporter gets UNAVAILABLE, as a direct call
    /// whose connection broke.
    func upstreamClosed() {
        if self.refusedUnprocessed, !self.exporterReset, case .relaying = self.phase,
            let refused = self.sentForRetry, self.attempt < Self.maximumAttempts, let context = self.context
        {
            self.retry(refused, context: context)
            return
        }
        if case .relaying = self.phase { self.phase = .closed }
        // Reads held for the upstream's sake would keep the exporter's end (and the stream)
        // unread: read on, discarding, now that nothing is forwarded.
        self.resumeDownstreamReading()
        // An exporter's reset went upstream: the upstream stream's end is its echo.
        guard !self.responseEnded, !self.exporterReset else { return }
        let reason = self.upstreamFailure.map { " (\($0))" } ?? ""
        let status = GRPCStatus(.unavailable, "jmp-bridge gateway: lost the call to \(self.upstreamName)\(reason)")
        self.outcome = status.description
        self.lost = true
        self.respond(status)
    }

    /// The controller sent a Listen response the gateway cannot rewrite: the exporter must not
    /// get the real router's address, so the call fails with INTERNAL (the exporter listens again).
    private func failListen(_ error: any Error) {
        self.gateway.logger.error("gateway: cannot rewrite a ListenResponse", metadata: ["error": "\(error)"])
        if case .relaying(let upstream) = self.phase {
            upstream.close()
            self.phase = .closed
        }
        self.respond(
            GRPCStatus(.internal, "jmp-bridge gateway: cannot rewrite the controller's ListenResponse: \(error)")
        )
    }

    /// The bridge stops: a controller call ends with UNAVAILABLE, its upstream call is reset.
    func endForDrain() {
        switch self.phase {
        case .relaying(let upstream):
            upstream.close()
        case .opening, .awaitingHeaders:
            break
        case .closed:
            return
        }
        self.phase = .closed
        self.held = []
        self.respond(GRPCStatus(.unavailable, "jmp-bridge gateway: stopping"))
    }

    // MARK: - Helpers

    /// Ends the call downstream with `status` (trailers, or a trailers-only response), then
    /// waits up to ``drainTime`` for the exporter to end its side before the stream is reset.
    private func respond(_ status: GRPCStatus) {
        guard let context = self.context, !self.responseEnded else { return }
        self.responseEnded = true
        let headers =
            self.responseStarted ? GRPCResponseHeaders.trailers(status) : GRPCResponseHeaders.trailersOnly(status)
        self.responseStarted = true
        // After the trailers, an exporter that has not ended its side gets RST_STREAM(NO_ERROR).
        self.drain.send(trailers: headers, immediately: false, context: context, logger: self.gateway.logger)
    }

    /// Logs the one line of a relay's end.
    private func logRelayEnd(_ record: RelayRecord) {
        let duration = NIODeadline.now() - record.started
        self.gateway.logger.log(
            level: self.lost ? .warning : .info,
            "gateway: relay ended",
            metadata: [
                "lease": "\(record.grant.lease ?? "-")",
                "exporter": "\(record.grant.exporter ?? "-")",
                "router": "\(record.grant.router)",
                "duration": "\(Gateway.seconds(duration))",
                "bytes-to-router": "\(record.bytesToRouter.load(ordering: .relaxed))",
                "bytes-to-exporter": "\(record.bytesToExporter.load(ordering: .relaxed))",
                "status": "\(self.outcome ?? "-")",
            ]
        )
    }

    /// The headers for the upstream request: the exporter's, byte for byte, but for the
    /// `:authority` (the upstream server's) and `:scheme`.
    static func upstreamHeaders(_ headers: HPACKHeaders, authority: String, scheme: String) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.reserveCapacity(headers.count)
        for (name, value, indexing) in headers {
            switch name {
            case ":authority": out.add(name: name, value: authority, indexing: indexing)
            case ":scheme": out.add(name: name, value: scheme, indexing: indexing)
            default: out.add(name: name, value: value, indexing: indexing)
            }
        }
        return out
    }

    /// Ends a router stream whose credentials the gateway does not forward, UNAUTHENTICATED;
    /// counted as a refused token.
    private func refuseRouterStream(_ headers: HTTP2Frame.FramePayload.Headers, log: Logger.Message, message: String) {
        self.gateway.statistics.refusedTokens.add(1, ordering: .relaxed)
        self.gateway.logger.warning(log)
        self.phase = .closed
        self.requestEnded = headers.endStream
        self.respond(GRPCStatus(.unauthenticated, message))
    }

    /// The token of an `authorization: Bearer TOKEN` header.
    static func bearerToken(_ headers: HPACKHeaders) -> String? {
        guard let value = headers.first(name: "authorization") else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else { return nil }
        return String(parts[1])
    }

    /// `OK`, `UNAVAILABLE`, … for a `grpc-status` value.
    static func statusName(_ value: String?) -> String {
        let names = [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
            "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
            "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
        ]
        guard let value else { return "no-status" }
        guard let code = Int(value), names.indices.contains(code) else { return "status-\(value)" }
        return names[code]
    }
}
