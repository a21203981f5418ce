import CJMPSystem
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The event loop of the local doors: one thread waiting on epoll for every door's listening
/// socket and every relayed connection, moving bytes with splice(2) as each side becomes ready
/// (never a thread per connection, never a blocking call).
///
/// Doors are added and removed from any thread; the request is queued and the loop woken
/// through an eventfd. Everything else lives on the loop's thread.
///
/// The process must ignore SIGPIPE (`jmp-bridge serve` does so first thing): splice(2) into a
/// socket whose peer has gone raises it, and a library must not change process-wide signal
/// handling behind its host's back. ``init(logger:capacity:onConnection:onFailure:)`` refuses
/// to start otherwise.
public final class DoorLoop: @unchecked Sendable {
    /// Each route's door counters.
    public var statistics: [String: DoorStatistics] { self.counters.withLock { $0 } }

    private let epoll: CInt
    private let wakeup: CInt
    private let logger: Logger
    private let capacity: Int
    private let onConnection: (@Sendable (_ opened: Bool) -> Void)?
    private let onFailure: @Sendable (String) -> Void
    private let requests = Mutex<[Request]>([])
    private let counters = Mutex<[String: DoorStatistics]>([:])
    /// Whether the loop thread has ended, and who waits for it to (``stop()``).
    private let finish = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    // Loop-thread state.
    private var doors: [UInt64: Door] = [:]
    /// Doors whose last accept failed for want of a resource (descriptors, memory): the
    /// connections still queued on them raise no new event (epoll is edge-triggered here), so
    /// they are tried again every ``acceptRetryMilliseconds`` until one is accepted or none waits.
    private var stalledDoors: Set<UInt64> = []
    private var relays: [UInt64: SpliceRelay] = [:]
    private var nextToken: UInt64 = 1
    private var running = true

    private enum Request {
        case add(Door)
        case remove(route: String)
        case stop
    }

    /// Tokens of listening sockets have this bit set; relay tokens do not.
    private static let doorBit: UInt64 = 1 << 63
    /// How often a stalled door (``stalledDoors``) tries to accept again.
    private static let acceptRetryMilliseconds: CInt = 100

    /// Starts the loop's thread. `capacity`: bytes in flight per direction of a connection;
    /// `onConnection` hears of every door connection opened (true) and closed (false), on the
    /// loop's thread; `onFailure` hears, once, that the loop died (its reason): every door is
    /// closed then, and the host should not go on as if they worked.
    public init(
        logger: Logger,
        capacity: Int = 1 << 20,
        onConnection: (@Sendable (_ opened: Bool) -> Void)? = nil,
        onFailure: @escaping @Sendable (String) -> Void = { _ in }
    ) throws(DoorError) {
        // A peer that closes while the relay writes must be an EPIPE to handle, not a signal.
        guard Self.isSIGPIPEIgnored() else {
            throw DoorError("SIGPIPE must be ignored before doors are opened (a closing peer would kill the process)")
        }
        self.logger = logger
        self.capacity = capacity
        self.onConnection = onConnection
        self.onFailure = onFailure
        let epoll = jmp_epoll_create()
        guard epoll >= 0 else { throw DoorError("epoll_create1: \(String(cString: strerror(errno)))") }
        let wakeup = jmp_eventfd()
        guard wakeup >= 0, jmp_epoll_add(epoll, wakeup, JMP_EV_IN, 0) == 0 else {
            close(epoll)
            throw DoorError("eventfd: \(String(cString: strerror(errno)))")
        }
        self.epoll = epoll
        self.wakeup = wakeup
        let thread = Thread { [self] in self.run() }
        thread.name = "jmp-bridge-doors"
        thread.start()
    }

    /// Starts serving a door; the loop owns its listening socket from now on.
    public func add(_ door: Door) {
        self.submit(.add(door))
    }

    /// Stops accepting on a route's door (its open connections go on) and closes its socket.
    public func remove(route: String) {
        self.submit(.remove(route: route))
    }

    /// Closes every door and connection and ends the thread; returns once it has (without
    /// blocking the caller's thread: the loop thread resumes it).
    public func stop() async {
        await withCheckedContinuation { continuation in
            let done = self.finish.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if done {
                continuation.resume()
            } else {
                self.submit(.stop)
            }
        }
    }

    /// True when the process ignores SIGPIPE.
    static func isSIGPIPEIgnored() -> Bool {
        jmp_signal_is_ignored(SIGPIPE) != 0
    }

    private func submit(_ request: Request) {
        self.requests.withLock { $0.append(request) }
        _ = jmp_eventfd_signal(self.wakeup)
    }

    // MARK: - The loop

    private func run() {
        var events = [jmp_event](repeating: jmp_event(), count: 64)
        var failure: String?
        while self.running {
            let timeout = self.stalledDoors.isEmpty ? -1 : Self.acceptRetryMilliseconds
            let count = jmp_epoll_wait(self.epoll, &events, CInt(events.count), timeout)
            if count < 0 {
                if errno == EINTR { continue }
                failure = "epoll_wait failed: \(String(cString: strerror(errno)))"
                self.logger.critical("door loop died: every door is closed", metadata: ["error": "\(failure ?? "")"])
                break
            }
            for event in events.prefix(Int(count)) {
                if event.token == 0 {
                    jmp_eventfd_drain(self.wakeup)
                    self.handleRequests()
                } else if event.token & Self.doorBit != 0 {
                    self.accept(on: event.token)
                } else if let relay = self.relays[event.token] {
                    self.pump(relay)
                }
            }
            for token in self.stalledDoors { self.accept(on: token) }
        }
        for token in Array(self.doors.keys) { self.closeDoor(token) }
        for relay in self.relays.values { self.finish(relay, failure: "the bridge is stopping") }
        close(self.epoll)
        close(self.wakeup)
        let waiters = self.finish.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
        if let failure { self.onFailure(failure) }
    }

    private func handleRequests() {
        let requests = self.requests.withLock { requests in
            defer { requests = [] }
            return requests
        }
        for request in requests {
            switch request {
            case .add(let door):
                let token = self.nextToken | Self.doorBit
                self.nextToken += 1
                guard jmp_epoll_add(self.epoll, door.listener, JMP_EV_IN, token) == 0 else {
                    self.logger.error(
                        "door: cannot watch the listening socket",
                        metadata: ["route": "\(door.route)", "error": "\(String(cString: strerror(errno)))"]
                    )
                    close(door.listener)
                    continue
                }
                self.doors[token] = door
                self.counters.withLock { $0[door.route] = $0[door.route] ?? DoorStatistics() }
                self.accept(on: token)  // connections may be waiting already
            case .remove(let route):
                for (token, door) in self.doors where door.route == route { self.closeDoor(token) }
            case .stop:
                self.running = false
            }
        }
    }

    private func closeDoor(_ token: UInt64) {
        guard let door = self.doors.removeValue(forKey: token) else { return }
        self.stalledDoors.remove(token)
        // A removed door's counters go with it once its last connection has ended.
        self.counters.withLock { if $0[door.route]?.active == 0 { $0[door.route] = nil } }
        _ = jmp_epoll_remove(self.epoll, door.listener)
        close(door.listener)
        door.socketFile?.removeIfStillBound()
    }

    private func accept(on token: UInt64) {
        guard let door = self.doors[token] else { return }
        while true {
            let client = jmp_accept(door.listener)
            if client < 0 {
                let error = errno
                // One connection given up on its way in, or a signal: the next may be waiting.
                if error == EINTR || error == ECONNABORTED { continue }
                if error == EAGAIN {
                    self.stalledDoors.remove(token)
                    return
                }
                // Out of descriptors or memory: the connections stay queued, and are tried again.
                if self.stalledDoors.insert(token).inserted {
                    self.logger.error(
                        "door: cannot accept; trying again every \(Self.acceptRetryMilliseconds) ms",
                        metadata: ["route": "\(door.route)", "error": "\(String(cString: strerror(error)))"]
                    )
                }
                return
            }
            if self.stalledDoors.remove(token) != nil {
                self.logger.notice("door: accepting again", metadata: ["route": "\(door.route)"])
            }
            let active = self.counters.withLock { $0[door.route]?.active ?? 0 }
            guard active < door.maxConnections else {
                self.count(door.route) { $0.refused += 1 }
                self.logger.warning(
                    "door connection refused: max-connections reached",
                    metadata: ["route": "\(door.route)", "max-connections": "\(door.maxConnections)"]
                )
                close(client)
                continue
            }
            let target = door.targetPath.withCString { jmp_connect_unix($0) }
            guard target >= 0 else {
                self.count(door.route) { $0.refused += 1 }
                self.logger.warning(
                    "door connection refused: the target is unreachable",
                    metadata: [
                        "route": "\(door.route)", "target": "unix:\(door.targetPath)",
                        "error": "\(String(cString: strerror(errno)))",
                    ]
                )
                close(client)
                continue
            }
            let id = self.nextToken
            self.nextToken += 1
            let relay = SpliceRelay(
                id: id,
                route: door.route,
                client: client,
                target: target,
                splice: door.splice,
                capacity: self.capacity
            )
            let events = JMP_EV_IN | JMP_EV_OUT | JMP_EV_RDHUP
            guard jmp_epoll_add(self.epoll, client, events, id) == 0,
                jmp_epoll_add(self.epoll, target, events, id) == 0
            else {
                self.logger.error("door: cannot watch a connection", metadata: ["route": "\(door.route)"])
                relay.close()
                continue
            }
            self.relays[id] = relay
            self.onConnection?(true)
            self.count(door.route) {
                $0.active += 1
                $0.total += 1
            }
            self.logger.debug(
                "door connection relayed",
                metadata: ["route": "\(door.route)", "door": "\(door.address)", "splice": "\(door.splice)"]
            )
            self.pump(relay)
        }
    }

    private func pump(_ relay: SpliceRelay) {
        let toTarget = relay.toTarget.moved
        let fromTarget = relay.fromTarget.moved
        var failure: String?
        do {
            try relay.pump()
        } catch {
            failure = "\(error)"
        }
        // Counted as they move, so that a long connection (an image being flashed) shows its
        // throughput while it lasts; before `finish`, which may drop a removed door's counters.
        let moved = (relay.toTarget.moved - toTarget, relay.fromTarget.moved - fromTarget)
        if moved != (0, 0) {
            self.counters.withLock { counters in
                counters[relay.route]?.bytesToTarget += moved.0
                counters[relay.route]?.bytesFromTarget += moved.1
            }
        }
        if failure != nil || relay.isFinished { self.finish(relay, failure: failure) }
    }

    /// Updates a route's door counters.
    private func count(_ route: String, _ update: (inout DoorStatistics) -> Void) {
        self.counters.withLock { counters in
            var statistics = counters[route] ?? DoorStatistics()
            update(&statistics)
            counters[route] = statistics
        }
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    private func finish(_ relay: SpliceRelay, failure: String?) {
        guard self.relays.removeValue(forKey: relay.id) != nil else { return }
        _ = jmp_epoll_remove(self.epoll, relay.client)
        _ = jmp_epoll_remove(self.epoll, relay.target)
        relay.close()
        let open = self.doors.values.contains { $0.route == relay.route }
        self.counters.withLock { counters in
            counters[relay.route]?.active -= 1
            // The door was removed meanwhile: its counters go with its last connection.
            if !open, counters[relay.route]?.active == 0 { counters[relay.route] = nil }
        }
        self.onConnection?(false)
        var metadata: Logger.Metadata = [
            "route": "\(relay.route)",
            "bytes-to-target": "\(relay.toTarget.moved)",
            "bytes-from-target": "\(relay.fromTarget.moved)",
            "splice": "\(relay.toTarget.usesSplice && relay.fromTarget.usesSplice)",
            "duration-ms": "\(Self.milliseconds(ContinuousClock.now - relay.started))",
        ]
        if failure == nil, !relay.fromTarget.isFinished {
            // The client closed altogether before the target ended (SpliceRelay.isFinished).
            metadata["closed-by"] = "client"
        }
        if let failure {
            metadata["reason"] = "\(failure)"
            self.logger.notice("door connection aborted", metadata: metadata)
        } else {
            self.logger.info("door connection finished", metadata: metadata)
        }
    }
}
