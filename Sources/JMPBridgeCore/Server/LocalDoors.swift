import CJMPSystem
import JMPDoors
import JMPSystemd
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// The local doors of the `unix:` routes that have one (`local:`): opens each door's listening
/// socket (or takes the one the service manager passed) and hands it to the ``DoorLoop``, which is
/// started with the first door and owned here until ``stop()``.
final class LocalDoors: Sendable {
    /// The doors' event loop, started with the first door.
    private let loop = NIOLockedValueBox<DoorLoop?>(nil)
    private let passed: PassedDescriptors
    private let idleExit: IdleExitTimer?
    private let logger: Logger
    /// The passed listening sockets of `systemd:` doors, by name (see ``passedListener(name:route:address:)``).
    private let passedListeners = NIOLockedValueBox<[String: CInt]>([:])
    /// Hears, once, that the doors' event loop died (every door is closed then).
    private let failureHandler = NIOLockedValueBox<(@Sendable (String) -> Void)?>(nil)

    /// Called, once, with the reason when the doors' event loop dies.
    var onFailure: (@Sendable (String) -> Void)? {
        get { self.failureHandler.withLockedValue { $0 } }
        set { self.failureHandler.withLockedValue { $0 = newValue } }
    }

    /// Each route's door counters (active, total and refused connections).
    var statistics: [String: DoorStatistics] { self.loop.withLockedValue { $0 }?.statistics ?? [:] }

    /// Creates the doors; no thread runs until the first door opens. Door connections keep a
    /// bridge with `idleExit` running, like gRPC connections.
    init(passed: PassedDescriptors, idleExit: IdleExitTimer?, logger: Logger) {
        self.passed = passed
        self.idleExit = idleExit
        self.logger = logger
    }

    /// Opens a route's local door, if it has one, and hands it to the door loop.
    func open(_ route: RouteConfiguration) throws {
        guard let local = route.local, case .unix(let targetPath) = route.target else { return }
        // The loop first: if it cannot start, no socket is left open or bound.
        let loop: DoorLoop
        do {
            loop = try self.startedLoop()
        } catch {
            throw BridgeError("route '\(route.name)': door: \(error)")
        }
        let listener: CInt
        var socketFile: DoorSocketFile?
        switch local.address {
        case .unix(let path):
            do {
                listener = try UnixSocketFile.listen(path: path, mode: local.mode, group: nil)
            } catch {
                throw BridgeError("route '\(route.name)': door: \(error)")
            }
            guard let bound = DoorSocketFile(boundAt: path) else {
                let reason = String(cString: strerror(errno))
                close(listener)
                unlink(path)
                throw BridgeError(
                    "route '\(route.name)': door: cannot read the socket file \(path) just bound: \(reason)"
                )
            }
            socketFile = bound
        case .systemd(let name):
            listener = try self.passedListener(name: name, route: route.name, address: local.address)
        case .tcp:
            return  // refused by the loader
        }
        loop.add(
            Door(
                route: route.name,
                listener: listener,
                address: "\(local.address)",
                targetPath: targetPath,
                splice: local.splice,
                socketFile: socketFile,
                maxConnections: local.maxConnections
            )
        )
        self.logger.info(
            "door open",
            metadata: ["route": "\(route.name)", "door": "\(local.address)", "splice": "\(local.splice)"]
        )
    }

    /// A copy of the passed listening socket called `name`, for the door loop to own (and close
    /// when the door is removed). The passed socket itself is claimed once and kept here until
    /// ``stop()``, so that a route whose door a reload replaces gets it again: the service
    /// manager keeps listening on it either way, and a socket nobody accepts on would leave its
    /// clients waiting in the backlog.
    private func passedListener(name: String, route: String, address: ListenAddress) throws -> CInt {
        let kept = try self.passedListeners.withLockedValue { kept throws -> CInt in
            if let socket = kept[name] { return socket }
            let passed = self.passed.claim(name: name)
            guard let socket = passed.first, passed.count == 1, socket.isListeningStreamSocket() else {
                for unusable in passed { close(unusable.descriptor) }
                throw BridgeError(
                    "route '\(route)': door \(address) needs exactly one passed listening stream socket named '\(name)' (got \(passed.count))"
                )
            }
            guard jmp_make_nonblocking(socket.descriptor) == 0 else {
                let reason = String(cString: strerror(errno))
                close(socket.descriptor)
                throw BridgeError(
                    "route '\(route)': door \(address): cannot make the passed socket non-blocking: \(reason)"
                )
            }
            kept[name] = socket.descriptor
            return socket.descriptor
        }
        let copy = fcntl(kept, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            throw BridgeError(
                "route '\(route)': door \(address): cannot copy the passed socket: \(String(cString: strerror(errno)))"
            )
        }
        return copy
    }

    /// The doors' event loop, started on first use.
    private func startedLoop() throws -> DoorLoop {
        try self.loop.withLockedValue { loop throws in
            if let loop { return loop }
            let idleExit = self.idleExit
            let failureHandler = self.failureHandler
            let created = try DoorLoop(
                logger: self.logger,
                onConnection: { opened in
                    if opened { idleExit?.connectionOpened() } else { idleExit?.connectionClosed() }
                },
                onFailure: { reason in failureHandler.withLockedValue { $0 }?(reason) }
            )
            loop = created
            return created
        }
    }

    /// Stops accepting on the door of each of `routes` (open door connections go on).
    func remove<Routes: Sequence<String>>(_ routes: Routes) {
        guard let loop = self.loop.withLockedValue({ $0 }) else { return }
        for route in routes { loop.remove(route: route) }
    }

    /// Closes every door and door connection and ends the loop's thread.
    func stop() async {
        let loop = self.loop.withLockedValue { loop in
            defer { loop = nil }
            return loop
        }
        await loop?.stop()
        let passed = self.passedListeners.withLockedValue { kept in
            defer { kept = [:] }
            return kept
        }
        for socket in passed.values { close(socket) }
    }
}
