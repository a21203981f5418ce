import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Connects a route's `unix:` target: one fresh connection per stream, with half-close enabled
/// so EOF can travel each way on its own.
///
/// A Unix socket whose listen backlog is full answers a non-blocking `connect` with `EAGAIN`
/// at once: the target is busy, not gone. Such a connect is tried again, after a short backoff
/// that doubles from ``initialBackoff`` up to ``maximumBackoff``, until ``connectTimeout`` has
/// passed since the first attempt; then it fails with ``UnixSocketBusy``. Every other error (no
/// socket, `ECONNREFUSED`, permission denied) fails the connect at once.
public struct UnixSocketConnector: Sendable {
    /// How long a stream waits for its target by default (the `connect-timeout` of a route).
    public static let defaultConnectTimeout = TimeAmount.seconds(10)
    /// The wait before the first retry of a busy target.
    public static let initialBackoff = TimeAmount.milliseconds(1)
    /// The longest wait between two attempts.
    public static let maximumBackoff = TimeAmount.milliseconds(50)

    /// The socket path.
    public var path: String
    /// The most bytes one read takes from the socket (and so the largest outgoing payload).
    public var maxReadSize: Int
    /// Bytes buffered towards the target above which the bridge stops reading from the client.
    /// The default, 1 MiB, is four of the bridge's largest reads: with less, a target that
    /// briefly falls behind stops the stream's reads often, and the frames then wait in NIOHTTP2,
    /// which makes its decoder copy its buffer (measured: 20 % more CPU per GiB at 256 KiB).
    /// It is still a bound: what a stream holds is this plus its HTTP/2 window.
    public var writeBufferHighWatermark: Int
    /// How long, from the first attempt, a connect may take, retries of a busy target included.
    public var connectTimeout: TimeAmount

    /// Creates a connector for `path`.
    public init(
        path: String,
        maxReadSize: Int,
        writeBufferHighWatermark: Int = 1024 * 1024,
        connectTimeout: TimeAmount = UnixSocketConnector.defaultConnectTimeout
    ) {
        self.path = path
        self.maxReadSize = maxReadSize
        self.writeBufferHighWatermark = writeBufferHighWatermark
        self.connectTimeout = connectTimeout
    }

    /// Connects on `eventLoop` (the stream's own loop, so both channels share it) with `handler`
    /// at the end of the new channel's pipeline. Must be called on `eventLoop`. Each retry of a
    /// busy target is logged at trace level on `logger`.
    ///
    /// A failed attempt's channel never becomes active, so `handler` sees nothing of it but being
    /// added and removed again; the same handler then goes into the next attempt's pipeline.
    ///
    /// `stillWanted`, asked on `eventLoop` before every retry, lets the stream stop waiting for a
    /// busy target it no longer needs (its client went away): the connect then fails with
    /// ``UnixSocketAbandoned`` at once instead of retrying until the timeout.
    public func connect(
        on eventLoop: any EventLoop,
        handler: TargetChannelHandler,
        logger: Logger? = nil,
        stillWanted: @escaping () -> Bool = { true }
    ) -> EventLoopFuture<any Channel> {
        let promise = eventLoop.makePromise(of: (any Channel).self)
        let started = NIODeadline.now()
        self.attempt(
            1,
            on: eventLoop,
            handler: NIOLoopBound(handler, eventLoop: eventLoop),
            started: started,
            backoff: Self.initialBackoff,
            logger: logger,
            stillWanted: stillWanted,
            promise: promise
        )
        return promise.futureResult
    }

    private func attempt(
        _ number: Int,
        on eventLoop: any EventLoop,
        handler: NIOLoopBound<TargetChannelHandler>,
        started: NIODeadline,
        backoff: TimeAmount,
        logger: Logger?,
        stillWanted: @escaping () -> Bool,
        promise: EventLoopPromise<any Channel>
    ) {
        let deadline = started + self.connectTimeout
        let remaining = deadline - .now()
        self.bootstrap(on: eventLoop, handler: handler, timeout: max(remaining, .milliseconds(1)))
            .connect(unixDomainSocketPath: self.path)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    if number > 1 {
                        logger?.debug(
                            "connected to a busy target",
                            metadata: [
                                "attempts": "\(number)",
                                "waited-ms": "\((NIODeadline.now() - started).nanoseconds / 1_000_000)",
                            ]
                        )
                    }
                    promise.succeed(channel)
                case .failure(let error as IOError) where error.errnoCode == EAGAIN:
                    guard stillWanted() else {
                        Self.abandon(after: number, logger: logger, promise: promise)
                        return
                    }
                    let now = NIODeadline.now()
                    guard now < deadline else {
                        promise.fail(UnixSocketBusy(attempts: number, waited: now - started))
                        return
                    }
                    // Jitter (half to all of the backoff) keeps many waiting streams from
                    // retrying in step.
                    let jittered = TimeAmount.nanoseconds(
                        backoff.nanoseconds / 2 + Int64.random(in: 0...max(backoff.nanoseconds / 2, 0))
                    )
                    let delay = min(jittered, deadline - now)
                    logger?.trace(
                        "target busy (listen backlog full), retrying",
                        metadata: ["attempt": "\(number)", "retry-in-us": "\(delay.nanoseconds / 1000)"]
                    )
                    eventLoop.assumeIsolated().scheduleTask(in: delay) {
                        guard stillWanted() else {
                            Self.abandon(after: number, logger: logger, promise: promise)
                            return
                        }
                        self.attempt(
                            number + 1,
                            on: eventLoop,
                            handler: handler,
                            started: started,
                            backoff: min(backoff * 2, Self.maximumBackoff),
                            logger: logger,
                            stillWanted: stillWanted,
                            promise: promise
                        )
                    }
                case .failure(let error):
                    promise.fail(error)
                }
            }
    }

    /// Gives up waiting for a busy target the stream no longer needs.
    private static func abandon(after attempts: Int, logger: Logger?, promise: EventLoopPromise<any Channel>) {
        logger?.debug("stopped waiting for a busy target: the stream is gone", metadata: ["attempts": "\(attempts)"])
        promise.fail(UnixSocketAbandoned(attempts: attempts))
    }

    private func bootstrap(
        on eventLoop: any EventLoop,
        handler: NIOLoopBound<TargetChannelHandler>,
        timeout: TimeAmount
    ) -> ClientBootstrap {
        let high = self.writeBufferHighWatermark
        return ClientBootstrap(group: eventLoop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(
                    minimum: min(1024, self.maxReadSize),
                    initial: min(16384, self.maxReadSize),
                    maximum: self.maxReadSize
                )
            )
            .channelOption(.writeBufferWaterMark, value: .init(low: high / 2, high: high))
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(handler.value)
                }
            }
    }
}

/// Short, operator-facing text for a socket error: the errno's meaning where there is one.
public func describeSocketError(_ error: any Error) -> String {
    if let error = error as? IOError {
        return String(cString: strerror(error.errnoCode))
    }
    if let error = error as? UnixSocketBusy {
        return error.description
    }
    if let error = error as? ChannelError {
        switch error {
        case .connectTimeout(let amount): return "connect timed out after \(amount.nanoseconds / 1_000_000) ms"
        default: return "\(error)"
        }
    }
    return "\(error)"
}
