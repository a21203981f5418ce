import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// The console of a `serial:` route: a ``ConsoleHub`` on a serial device that the bridge holds
/// open across streams, locked against other users. When the device goes away (EIO, ENODEV or
/// a hang-up on read: the adapter was unplugged) the route is down, and the bridge reopens the
/// device with backoff (``initialRetryDelay`` doubling up to ``maximumRetryDelay``) until it is
/// back; the scrollback is kept across.
public final class SerialConsole: Sendable {
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

    /// Creates the console; nothing is opened until ``start()``.
    public init(
        name: String,
        device: String,
        settings: SerialSettings,
        scrollback: Int,
        lagLimit: Int,
        eventLoop: any EventLoop,
        threadPool: NIOThreadPool = .singleton,
        logger: Logger,
        onOpened: (@Sendable (CInt) -> Void)? = nil
    ) {
        self.onOpened = onOpened
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

    /// Told the descriptor each time the device is opened (at start and after every reopen), for
    /// the service manager's file-descriptor store; on the console's event loop.
    private let onOpened: (@Sendable (CInt) -> Void)?

    /// The open device's descriptor (owned by NIO: never close it), or nil while it is down.
    public var descriptor: CInt? { self.hub.descriptor }

    /// Opens the device. A device that is present but unusable (locked by another process, not a
    /// terminal, not permitted, settings refused) fails the start; an absent one leaves the route
    /// down and is retried.
    ///
    /// `adopting`: a descriptor of the device kept over a restart, used instead of opening the
    /// device again if it still is that device (else it is closed and the device opened anew).
    public func start(adopting stored: CInt? = nil) -> EventLoopFuture<Void> {
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
        return self.openDevice(adopting: stored).flatMap { result in
            switch result {
            case .success(let fd):
                self.retry.value.openedAt = .now()
                return self.hub.connect(descriptor: fd).flatMapError { error in
                    Glibc.close(fd)
                    return eventLoop.makeFailedFuture(error)
                }.map { self.onOpened?(fd) }
            case .failure(let error) where error.isAbsent:
                self.markDown(error)
                self.scheduleReopen(after: Self.initialRetryDelay)
                return eventLoop.makeSucceededVoidFuture()
            case .failure(let error):
                return eventLoop.makeFailedFuture(error)
            }
        }
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
                        self.onOpened?(fd)
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
