import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The console of a `serial:` route: a ``ConsoleHub`` on a serial device that the bridge holds
/// open across streams, locked against other users. When the device goes away (EIO, ENODEV or
/// a hang-up on read: the adapter was unplugged) the route is down, and the bridge reopens the
/// device with backoff (``initialRetryDelay`` doubling up to ``maximumRetryDelay``) until it is
/// back; the scrollback is kept across.
///
/// Every time the device is opened its descriptor goes to the service manager's
/// file-descriptor store (its ``ConsoleStoreSlot``), and a restarted bridge takes it back: the
/// device is never closed across a restart (no DTR drop), and it stays locked for this bridge.
public final class SerialConsole: RouteConsole {
    /// First wait before reopening a device that went away.
    public static let initialRetryDelay = TimeAmount.milliseconds(100)
    /// Longest wait between reopen attempts.
    public static let maximumRetryDelay = TimeAmount.seconds(5)

    /// The hub every attachment of the route goes through.
    public let hub: ConsoleHub
    /// The device path.
    public let device: String
    /// The line settings applied on every open.
    public let settings: SerialSettings
    private let threadPool: NIOThreadPool
    private let logger: Logger
    private let retry: NIOLoopBoundBox<RetryState>

    private final class RetryState {
        var stopped = false
        var scheduled: Scheduled<Void>?
        var lastProblem: String?
        /// When the device was last (re)opened, and the wait before that reopen: a device that
        /// fails again soon after it was reopened is retried with the next longer wait, so a
        /// flapping adapter cannot make the bridge spin.
        var openedAt: NIODeadline?
        var lastDelay = SerialConsole.initialRetryDelay
    }

    /// Creates the console; nothing is opened until ``start()``. `slot`: where the device's
    /// descriptor is kept across a restart, and the one kept before it, if any.
    public init(
        name: String,
        device: String,
        settings: SerialSettings,
        scrollback: Int,
        lagLimit: Int,
        eventLoop: any EventLoop,
        threadPool: NIOThreadPool = .singleton,
        logger: Logger,
        slot: ConsoleStoreSlot
    ) {
        self.slot = slot
        self.device = device
        self.settings = settings
        self.threadPool = threadPool
        self.logger = logger
        self.hub = ConsoleHub(
            name: name,
            device: "serial device \(device)",
            eventLoop: eventLoop,
            scrollback: scrollback,
            lagLimit: lagLimit,
            logger: logger
        )
        self.retry = NIOLoopBoundBox.makeBoxSendingValue(RetryState(), eventLoop: eventLoop)
    }

    /// Where the device's descriptor goes each time it is opened (at start and after every
    /// reopen), replacing the stale copy of a device that was unplugged.
    private let slot: ConsoleStoreSlot

    /// The open device's descriptor (owned by NIO: never close it), or nil while it is down.
    public var descriptor: CInt? { self.hub.descriptor }

    /// Opens the device. A device that is present but unusable (locked by another process, not a
    /// terminal, not permitted, settings refused) fails the start; an absent one leaves the route
    /// down and is retried.
    ///
    /// The descriptor kept in the slot over a restart is used instead of opening the device again
    /// if it still is that device (else it is closed and the device opened anew).
    public func start() -> EventLoopFuture<Void> {
        let eventLoop = self.hub.eventLoop
        self.hub.onDeviceLost { [weak self] _ in
            guard let self else { return }
            self.logger.warning(
                "serial device lost; reopening when it returns",
                metadata: ["route": "\(self.hub.name)", "device": "\(self.device)"]
            )
            let retry = self.retry.value
            var delay = Self.initialRetryDelay
            if let openedAt = retry.openedAt, NIODeadline.now() - openedAt < .seconds(5) {
                delay = Self.next(after: retry.lastDelay)
            }
            self.scheduleReopen(after: delay)
        }
        return self.openDevice(adopting: self.slot.restored).flatMap { result in
            switch result {
            case .success(let fd):
                self.retry.value.openedAt = .now()
                return self.hub.connect(descriptor: fd).flatMapError { error in
                    Glibc.close(fd)
                    return eventLoop.makeFailedFuture(error)
                }.map { self.slot.replace(with: fd) }
            case .failure(let error) where error.isAbsent:
                self.markDown(error)
                self.scheduleReopen(after: Self.initialRetryDelay)
                return eventLoop.makeSucceededVoidFuture()
            case .failure(let error):
                return eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// The route's pty link, once ``add(link:)`` gave it one.
    public var link: SerialLink? { self.linkBox.withLock { $0 } }
    private let linkBox = Mutex<SerialLink?>(nil)

    /// Gives the console its pty link (attached to ``hub``), which it closes with the device.
    public func add(link: SerialLink) {
        self.linkBox.withLock { $0 = link }
    }

    /// Stops reopening and closes the device and the link; `forget`: the route is gone, so the
    /// stored copies go too.
    public func close(forget: Bool) async {
        try? await self.close().get()
        if forget { self.slot.remove() }
        await self.link?.close(forget: forget)
    }

    /// Stops reopening and closes the device; every attachment is cut.
    public func close() -> EventLoopFuture<Void> {
        self.hub.eventLoop.flatSubmit {
            let retry = self.retry.value
            retry.stopped = true
            retry.scheduled?.cancel()
            retry.scheduled = nil
            return self.hub.close()
        }
    }

    private func openDevice(adopting stored: CInt? = nil) -> EventLoopFuture<Result<CInt, SerialDevice.OpenError>> {
        let path = self.device
        let settings = self.settings
        let logger = self.logger
        let name = self.hub.name
        return self.threadPool.runIfActive(eventLoop: self.hub.eventLoop) {
            if let stored {
                do throws(SerialDevice.OpenError) {
                    try SerialDevice.adopt(stored, path: path, settings: settings)
                    logger.info("serial device taken back from the service manager", metadata: ["route": "\(name)"])
                    return .success(stored)
                } catch {
                    logger.notice(
                        "stored serial descriptor not used",
                        metadata: ["route": "\(name)", "reason": "\(error)"]
                    )
                    Glibc.close(stored)
                }
            }
            return Result { () throws(SerialDevice.OpenError) -> CInt in
                try SerialDevice.open(path: path, settings: settings)
            }
        }
    }

    private func markDown(_ error: SerialDevice.OpenError) {
        let reason = "route '\(self.hub.name)': serial device unavailable: \(error.description)"
        self.hub.markDown(reason: reason)
        self.hub.eventLoop.execute {
            let retry = self.retry.value
            if retry.lastProblem != error.description {
                retry.lastProblem = error.description
                self.logger.warning(
                    "serial device unavailable; retrying",
                    metadata: ["route": "\(self.hub.name)", "reason": "\(error.description)"]
                )
            }
        }
    }

    private func scheduleReopen(after delay: TimeAmount) {
        self.hub.eventLoop.execute {
            let retry = self.retry.value
            guard !retry.stopped else { return }
            retry.scheduled?.cancel()
            retry.scheduled = self.hub.eventLoop.scheduleTask(in: delay) {
                self.reopen(delay: delay)
            }
        }
    }

    static func next(after delay: TimeAmount) -> TimeAmount {
        .nanoseconds(min(delay.nanoseconds * 2, Self.maximumRetryDelay.nanoseconds))
    }

    private func reopen(delay: TimeAmount) {
        let next = Self.next(after: delay)
        self.openDevice().whenComplete { result in
            let retry = self.retry.value
            switch result {
            case .success(.success(let fd)):
                guard !retry.stopped else {
                    Glibc.close(fd)
                    return
                }
                self.hub.connect(descriptor: fd).whenComplete { connected in
                    switch connected {
                    case .success:
                        self.slot.replace(with: fd)
                        let retry = self.retry.value
                        retry.lastProblem = nil
                        retry.openedAt = .now()
                        retry.lastDelay = delay
                        self.logger.notice(
                            "serial device reopened",
                            metadata: ["route": "\(self.hub.name)", "device": "\(self.device)"]
                        )
                    case .failure(let error):
                        Glibc.close(fd)
                        self.logger.warning(
                            "serial device reopened but could not be used; retrying",
                            metadata: ["route": "\(self.hub.name)", "error": "\(error)"]
                        )
                        self.scheduleReopen(after: next)
                    }
                }
            case .success(.failure(let error)):
                self.markDown(error)
                self.scheduleReopen(after: next)
            case .failure(let error):
                // The thread pool is shutting down.
                self.logger.debug("serial reopen abandoned", metadata: ["error": "\(error)"])
            }
        }
    }
}
