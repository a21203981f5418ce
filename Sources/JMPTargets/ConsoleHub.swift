import Logging
import NIOCore
import NIOPosix

/// Receives a console's output; called on the console's event loop (implementations hop to
/// their own).
public protocol ConsoleSubscriber: AnyObject, Sendable {
    /// Bytes the device printed.
    func consoleOutput(_ bytes: ByteBuffer)
    /// The subscriber fell too far behind (or the console went away) and is detached.
    func consoleCut(_ reason: ConsoleUnavailable)
}

/// One console (a pty master today) shared by any number of attachments: output goes to all of
/// them and to the scrollback, input from any of them goes to the device.
///
/// The hub never waits for an attachment: each one may have at most `lagLimit` bytes of output
/// delivered but not yet acknowledged (taken by its client); beyond that it is cut, so a
/// stalled viewer never stalls the device or the other viewers.
public final class ConsoleHub: Sendable {
    /// The route's name, for messages.
    public let name: String
    /// The loop the device channel and all hub state live on.
    public let eventLoop: any EventLoop
    /// Output bytes an attachment may lag behind before it is cut.
    public let lagLimit: Int
    private let state: NIOLoopBoundBox<State>
    private let logger: Logger

    private final class State {
        var channel: (any Channel)?
        var scrollback: ScrollbackBuffer
        var subscribers: [UInt64: Subscriber] = [:]
        var nextID: UInt64 = 1

        init(scrollback: Int) {
            self.scrollback = ScrollbackBuffer(capacity: scrollback)
        }
    }

    private struct Subscriber {
        let handle: any ConsoleSubscriber
        var unacknowledged = 0
    }

    private init(name: String, eventLoop: any EventLoop, scrollback: Int, lagLimit: Int, logger: Logger) {
        self.name = name
        self.eventLoop = eventLoop
        self.lagLimit = lagLimit
        self.logger = logger
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(scrollback: scrollback), eventLoop: eventLoop)
    }

    /// Starts a hub on `master` (the hub takes ownership of the descriptor).
    public static func start(
        name: String,
        master: CInt,
        on eventLoop: any EventLoop,
        scrollback: Int,
        lagLimit: Int,
        logger: Logger
    ) -> EventLoopFuture<ConsoleHub> {
        let hub = ConsoleHub(
            name: name,
            eventLoop: eventLoop,
            scrollback: scrollback,
            lagLimit: lagLimit,
            logger: logger
        )
        return NIOPipeBootstrap(group: eventLoop)
            .channelOption(.autoRead, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConsoleDeviceHandler(hub: hub))
                }
            }
            .takingOwnershipOfDescriptor(inputOutput: master)
            .map { channel in
                hub.state.value.channel = channel
                return hub
            }
    }

    /// Attaches a subscriber; the future holds its id and the scrollback to replay first.
    public func attach(_ subscriber: any ConsoleSubscriber) -> EventLoopFuture<(id: UInt64, scrollback: ByteBuffer)> {
        self.eventLoop.submit {
            let state = self.state.value
            guard state.channel != nil else {
                throw ConsoleUnavailable(reason: "console '\(self.name)' is not open")
            }
            let id = state.nextID
            state.nextID += 1
            state.subscribers[id] = Subscriber(handle: subscriber)
            return (id, state.scrollback.contents)
        }
    }

    /// Detaches a subscriber (idempotent).
    public func detach(_ id: UInt64) {
        self.eventLoop.execute {
            self.state.value.subscribers[id] = nil
        }
    }

    /// The subscriber's client has taken `count` more bytes of output.
    public func acknowledge(_ id: UInt64, count: Int) {
        self.eventLoop.execute {
            self.state.value.subscribers[id]?.unacknowledged -= count
        }
    }

    /// Writes input to the device; the future completes when the device has taken it.
    public func write(_ bytes: ByteBuffer) -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            guard let channel = self.state.value.channel else {
                return self.eventLoop.makeFailedFuture(ConsoleUnavailable(reason: "console '\(self.name)' is closed"))
            }
            return channel.writeAndFlush(bytes)
        }
    }

    /// Closes the device and cuts every attachment.
    public func close() -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            let state = self.state.value
            let subscribers = state.subscribers.values
            state.subscribers = [:]
            for subscriber in subscribers {
                subscriber.handle.consoleCut(ConsoleUnavailable(reason: "console '\(self.name)' closed"))
            }
            guard let channel = state.channel else { return self.eventLoop.makeSucceededVoidFuture() }
            state.channel = nil
            return channel.close().recover { _ in }
        }
    }

    // MARK: - Device events (on the hub's loop)

    fileprivate func deviceOutput(_ bytes: ByteBuffer) {
        let state = self.state.value
        state.scrollback.append(bytes)
        let count = bytes.readableBytes
        for (id, var subscriber) in state.subscribers {
            if subscriber.unacknowledged + count > self.lagLimit {
                state.subscribers[id] = nil
                self.logger.warning(
                    "console attachment cut: it lagged too far behind",
                    metadata: ["route": "\(self.name)", "lag-limit": "\(self.lagLimit)"]
                )
                subscriber.handle.consoleCut(
                    ConsoleUnavailable(
                        reason:
                            "console '\(self.name)': this attachment fell more than \(self.lagLimit) bytes behind the output and was cut",
                        lagged: true
                    )
                )
                continue
            }
            subscriber.unacknowledged += count
            state.subscribers[id] = subscriber
            subscriber.handle.consoleOutput(bytes)
        }
    }

    fileprivate func deviceClosed(error: (any Error)?) {
        let state = self.state.value
        state.channel = nil
        let subscribers = state.subscribers.values
        state.subscribers = [:]
        if let error {
            self.logger.error("console device failed", metadata: ["route": "\(self.name)", "error": "\(error)"])
        }
        for subscriber in subscribers {
            subscriber.handle.consoleCut(ConsoleUnavailable(reason: "console '\(self.name)' is gone"))
        }
    }
}

/// Why a console attachment ended or could not start.
public struct ConsoleUnavailable: Error, Sendable, CustomStringConvertible {
    /// Why.
    public let reason: String
    /// The attachment was cut for lagging (RESOURCE_EXHAUSTED) rather than the console failing.
    public let lagged: Bool

    /// Creates the error.
    public init(reason: String, lagged: Bool = false) {
        self.reason = reason
        self.lagged = lagged
    }

    public var description: String { self.reason }
}

/// Reads the console device and hands everything to the hub.
private final class ConsoleDeviceHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let hub: ConsoleHub
    private var error: (any Error)?

    init(hub: ConsoleHub) {
        self.hub = hub
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.hub.deviceOutput(Self.unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.error = error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.hub.deviceClosed(error: self.error)
    }
}
