import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One console (a pty master or a serial device) shared by any number of attachments: output
/// goes to all of them and to the scrollback, input from any of them goes to the device.
///
/// The hub never waits for an attachment: each one may have at most `lagLimit` bytes of output
/// delivered but not yet acknowledged (taken by its client); beyond that it is cut, so a
/// stalled viewer never stalls the device or the other viewers.
///
/// The hub outlives its device: when the device goes away (a serial adapter unplugged) every
/// attachment is cut, new ones are refused with the reason, and ``connect(descriptor:)`` may
/// give it a new device later; the scrollback is kept across.
public final class ConsoleHub: Sendable {
    /// The route's name, for messages.
    public let name: String
    /// The loop the device channel and all hub state live on.
    public let eventLoop: any EventLoop
    /// Output bytes an attachment may lag behind before it is cut.
    public let lagLimit: Int
    private let state: NIOLoopBoundBox<State>
    private let logger: Logger
    /// What the device is, for messages: "pty", "serial device /dev/ttyUSB0".
    private let deviceDescription: String
    private let currentDescriptor = Atomic<CInt>(-1)

    private final class State {
        var channel: (any Channel)?
        var scrollback: ScrollbackBuffer
        var subscribers: [UInt64: Subscriber] = [:]
        var nextID: UInt64 = 1
        /// Why there is no device, once it went away (nil while never connected or up).
        var downReason: String?
        var closed = false
        var deviceLost: (@Sendable ((any Error)?) -> Void)?
        var deviceConnected: [@Sendable () -> Void] = []
        var outputBytes = 0
        var inputBytes = 0
        var cuts = 0
        var deviceConnects = 0

        init(scrollback: Int) {
            self.scrollback = ScrollbackBuffer(capacity: scrollback)
        }
    }

    private struct Subscriber {
        let handle: any ConsoleSubscriber
        var unacknowledged = 0
    }

    /// Creates a hub without a device; ``connect(descriptor:)`` gives it one. `device` names the
    /// device in messages ("pty", "serial device /dev/ttyUSB0").
    public init(
        name: String,
        device: String = "pty",
        eventLoop: any EventLoop,
        scrollback: Int,
        lagLimit: Int,
        logger: Logger
    ) {
        self.name = name
        self.eventLoop = eventLoop
        self.lagLimit = lagLimit
        self.logger = logger
        self.deviceDescription = device
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(scrollback: scrollback), eventLoop: eventLoop)
    }

    /// Starts a hub on `master` (the hub owns the descriptor once the future succeeds).
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
        return hub.connect(descriptor: master).map { hub }
    }

    /// The device descriptor the hub reads and writes now (a pty master or a serial device), or
    /// nil while it has none. NIO owns it: use it for `fstat`/`ioctl`, or to hand a duplicate to
    /// systemd's file-descriptor store, never to close it.
    public var descriptor: CInt? {
        let fd = self.currentDescriptor.load(ordering: .acquiring)
        return fd >= 0 ? fd : nil
    }

    /// Makes `descriptor` the hub's device. Once the future succeeds the hub owns it (and closes
    /// it when the device goes away or the hub is closed); if it fails, the caller still does.
    public func connect(descriptor: CInt) -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            let state = self.state.value
            guard !state.closed, state.channel == nil else {
                return self.eventLoop.makeFailedFuture(
                    ConsoleUnavailable(reason: "console '\(self.name)' is closed or already has a device")
                )
            }
            return NIOPipeBootstrap(group: self.eventLoop)
                .channelOption(.autoRead, value: true)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ConsoleDeviceHandler(hub: self))
                    }
                }
                .takingOwnershipOfDescriptor(inputOutput: descriptor)
                .map { channel in
                    let state = self.state.value
                    guard !state.closed else {
                        // Closed while connecting: the channel owns the descriptor and closes it.
                        channel.close(promise: nil)
                        return
                    }
                    state.channel = channel
                    state.downReason = nil
                    state.deviceConnects += 1
                    self.currentDescriptor.store(descriptor, ordering: .releasing)
                    for handler in state.deviceConnected { handler() }
                }
        }
    }

    /// Calls `handler` on the hub's loop whenever a connected device fails or reaches
    /// end-of-file (not when the hub is closed).
    public func onDeviceLost(_ handler: @escaping @Sendable ((any Error)?) -> Void) {
        self.eventLoop.execute { self.state.value.deviceLost = handler }
    }

    /// Calls `handler` on the hub's loop every time a device is connected (the first one, and
    /// each one after the device went away), and at once if the hub has a device now.
    public func onDeviceConnected(_ handler: @escaping @Sendable () -> Void) {
        self.eventLoop.execute {
            let state = self.state.value
            state.deviceConnected.append(handler)
            if state.channel != nil { handler() }
        }
    }

    /// Sets the reason new attachments are refused with while there is no device.
    public func markDown(reason: String) {
        self.eventLoop.execute {
            let state = self.state.value
            if state.channel == nil { state.downReason = reason }
        }
    }

    /// What the hub is doing now, for `status`.
    public func status() -> EventLoopFuture<ConsoleStatus> {
        self.eventLoop.submit {
            let state = self.state.value
            return ConsoleStatus(
                up: state.channel != nil,
                downReason: state.channel == nil ? state.downReason ?? "not open" : nil,
                attachments: state.subscribers.count,
                outputBytes: state.outputBytes,
                inputBytes: state.inputBytes,
                cuts: state.cuts,
                scrollbackBytes: state.scrollback.contents.readableBytes,
                deviceConnects: state.deviceConnects
            )
        }
    }

    /// Attaches a subscriber; the future holds its id and the scrollback to replay first.
    public func attach(_ subscriber: any ConsoleSubscriber) -> EventLoopFuture<(id: UInt64, scrollback: ByteBuffer)> {
        self.eventLoop.submit {
            let state = self.state.value
            guard state.channel != nil else {
                throw ConsoleUnavailable(reason: state.downReason ?? "console '\(self.name)' is not open")
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

    /// ``acknowledge(_:count:)`` for a subscriber living on the hub's own loop, taking effect at
    /// once rather than in a later task: output arriving meanwhile is then measured against what
    /// really waits for the subscriber.
    func acknowledgeOnLoop(_ id: UInt64, count: Int) {
        self.eventLoop.preconditionInEventLoop()
        self.state.value.subscribers[id]?.unacknowledged -= count
    }

    /// Writes input to the device; the future completes when the device has taken it.
    public func write(_ bytes: ByteBuffer) -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            let state = self.state.value
            guard let channel = state.channel else {
                return self.eventLoop.makeFailedFuture(
                    ConsoleUnavailable(reason: state.downReason ?? "console '\(self.name)' is closed")
                )
            }
            let count = bytes.readableBytes
            return channel.writeAndFlush(bytes).map { self.state.value.inputBytes += count }
        }
    }

    /// Closes the device and cuts every attachment.
    public func close() -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            let state = self.state.value
            state.closed = true
            state.deviceConnected = []
            let subscribers = state.subscribers.values
            state.subscribers = [:]
            for subscriber in subscribers {
                subscriber.handle.consoleCut(ConsoleUnavailable(reason: "console '\(self.name)' closed"))
            }
            guard let channel = state.channel else { return self.eventLoop.makeSucceededVoidFuture() }
            state.channel = nil
            self.currentDescriptor.store(-1, ordering: .releasing)
            return channel.close().recover { _ in }
        }
    }

    // MARK: - Device events (on the hub's loop)

    func deviceOutput(_ bytes: ByteBuffer) {
        let state = self.state.value
        state.scrollback.append(bytes)
        let count = bytes.readableBytes
        state.outputBytes += count
        for (id, var subscriber) in state.subscribers {
            if subscriber.unacknowledged + count > self.lagLimit {
                state.subscribers[id] = nil
                state.cuts += 1
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

    func deviceClosed(error: (any Error)?) {
        let state = self.state.value
        // Closed by close(): that already cut everyone.
        guard state.channel != nil, !state.closed else { return }
        state.channel = nil
        self.currentDescriptor.store(-1, ordering: .releasing)
        let subscribers = state.subscribers.values
        state.subscribers = [:]
        let reason =
            "route '\(self.name)': the \(self.deviceDescription) went away"
            + (error.map { " (\(describeSocketError($0)))" } ?? " (hang-up)")
        state.downReason = reason
        self.logger.error("console device lost", metadata: ["route": "\(self.name)", "reason": "\(reason)"])
        for subscriber in subscribers {
            subscriber.handle.consoleCut(ConsoleUnavailable(reason: reason))
        }
        state.deviceLost?(error)
    }
}
