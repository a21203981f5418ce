import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// How a stream sends its final status (the trailers) when it fails while the client may
/// still be sending: it first reads and discards the client's DATA until the client has ended
/// its side (END_STREAM) or paused for ``quietTime``, within bounds, and only then sends the
/// trailers.
///
/// A grpc-core client (grpcio, which Jumpstarter uses) that receives the trailers while one of
/// its writes is still in flight resets the stream itself (RST_STREAM, "force_client_rst_stream"),
/// fails that write, and its asyncio API then reports `INTERNAL: Internal error from Core`
/// instead of the status the server sent: the real reason (target refused or busy, a limit hit)
/// never reaches the caller. That happens whatever the server does after the trailers, so the
/// trailers wait until the client is not writing. The wait is bounded: at most ``maximumTime``
/// and ``maximumBytes`` of discarded DATA, after which the trailers go out anyway. Everything
/// else of the stream (its target connection, its place in the stream limits, its log line) is
/// released or written when the status is decided, not when it is sent.
///
/// A successful stream's status, and any status once the client has ended its side, is sent
/// at once. After the trailers a client that has not ended its side gets RST_STREAM(NO_ERROR),
/// as gRPC servers do: any other code would make it report CANCELLED instead of the status.
///
/// Router streams (the bridge's own statuses) and the exporter gateway (the statuses it makes
/// itself) both send theirs through it.
public final class RequestDrain {
    /// How long the client must have sent nothing before a held status goes out.
    public static let quietTime = TimeAmount.milliseconds(100)
    /// The longest a status is held for a client that keeps sending.
    public static let maximumTime = TimeAmount.seconds(2)
    /// The most DATA bytes discarded while a status is held.
    public let maximumBytes: Int

    /// The client ended its side of the stream (END_STREAM).
    private var requestEnded = false
    /// When the client last sent HEADERS or DATA: a client that has only just opened the stream
    /// is about to write, not quiet.
    private var lastFrame = NIODeadline.distantPast
    /// The trailers waiting to be sent, while draining.
    private var held: HPACKHeaders?
    private var discarded = 0
    private var started = NIODeadline.distantPast
    private var logger: Logger?
    private var timer: Scheduled<Void>?

    /// A drain that discards at most `maximumBytes` while it holds a status: what a client may
    /// have in flight, the stream's window plus the rest of a message as large as allowed, is
    /// the natural choice.
    public init(maximumBytes: Int) {
        self.maximumBytes = maximumBytes
    }

    /// Sees every frame the client sends, before the stream handler does. Returns true if the
    /// frame was consumed (discarded because a status is held): the handler must ignore it.
    public func observe(_ payload: HTTP2Frame.FramePayload, context: ChannelHandlerContext) -> Bool {
        var bytes = 0
        switch payload {
        case .data(let data):
            if data.endStream { self.requestEnded = true }
            bytes = data.data.readableBytes
            self.lastFrame = context.eventLoop.now
        case .headers(let headers):
            if headers.endStream { self.requestEnded = true }
            self.lastFrame = context.eventLoop.now
        default:
            return false
        }
        guard self.held != nil else { return false }
        self.discarded += bytes
        if self.requestEnded {
            self.release(context: context, reason: "the client ended its side")
        } else if self.discarded > self.maximumBytes {
            self.release(context: context, reason: "byte limit")
        }
        return true
    }

    /// Sends `trailers` (END_STREAM) now if `immediately`, or if the client has ended its side
    /// or been quiet for ``quietTime``; otherwise holds them, draining the client, until one of
    /// those or a bound. A held status is logged at debug level on `logger` when it goes out,
    /// with how long it was held and why it went.
    public func send(trailers: HPACKHeaders, immediately: Bool, context: ChannelHandlerContext, logger: Logger) {
        self.held = trailers
        self.started = context.eventLoop.now
        if immediately || self.requestEnded || !context.channel.isActive {
            self.release(context: context, reason: nil)
        } else {
            self.logger = logger
            // The stream may have held its reads (backpressure from the target): drain now.
            context.read()
            self.check(context: context)
        }
    }

    /// The stream closed (the client reset it, or its connection went away): nothing can be
    /// sent any more.
    public func stop() {
        self.held = nil
        self.timer?.cancel()
        self.timer = nil
    }

    /// Sends the held trailers if the client has been quiet long enough or the time is up;
    /// otherwise checks again when it might be.
    private func check(context: ChannelHandlerContext) {
        let now = context.eventLoop.now
        let quietAt = self.lastFrame + Self.quietTime
        let giveUpAt = self.started + Self.maximumTime
        if now >= quietAt || now >= giveUpAt {
            self.release(context: context, reason: now >= quietAt ? "quiet" : "time limit")
            return
        }
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: min(quietAt, giveUpAt)) {
            self.timer = nil
            guard self.held != nil else { return }
            self.check(context: context)
        }
    }

    /// Sends the held trailers; `reason` (nil: not held) is why they go now.
    private func release(context: ChannelHandlerContext, reason: String?) {
        self.timer?.cancel()
        self.timer = nil
        guard let trailers = self.held else { return }
        self.held = nil
        guard context.channel.isActive else { return }
        if let reason {
            self.logger?.debug(
                "status sent after draining the client",
                metadata: [
                    "released-by": "\(reason)",
                    "held-ms": "\((context.eventLoop.now - self.started).nanoseconds / 1_000_000)",
                    "discarded-bytes": "\(self.discarded)",
                ]
            )
        }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(
            NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: trailers, endStream: true))),
            promise: promise
        )
        // Once the trailers are out (closing earlier would drop queued DATA frames), a client
        // that has not ended its side gets RST_STREAM(NO_ERROR).
        promise.futureResult.assumeIsolated().whenComplete { _ in Self.reset(context) }
    }

    /// `RST_STREAM(NO_ERROR)` if the stream is still open.
    public static func reset(_ context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        context.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.rstStream(.noError)), promise: nil)
    }
}
