import JMPSystemd
import JMPTargets
import Logging
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The open consoles of the console routes, `pty:` and `serial:` alike: opens each one (taking
/// back the device the service manager kept over a restart), registers its hub with the consoles
/// streams and local attaches find in the ``BridgeContext``, and closes it again.
///
/// Each console's device is kept in the service manager's file-descriptor store under
/// ``storeName(of:)``, and a serial route's link under ``linkStoreName(of:)``, so that a restarted
/// bridge takes back the same pty or the same open serial device, and the same link.
final class ConsoleRegistry: Sendable {
    private let consoles = NIOLockedValueBox<[String: any RouteConsole]>([:])
    private let environment: BridgeContext
    private let passed: PassedDescriptors
    private let notifier: ServiceNotifier
    private let group: any EventLoopGroup
    private let logger: Logger

    /// Creates an empty registry whose hubs go to `environment`.
    init(
        environment: BridgeContext,
        passed: PassedDescriptors,
        notifier: ServiceNotifier,
        group: any EventLoopGroup,
        logger: Logger
    ) {
        self.environment = environment
        self.passed = passed
        self.notifier = notifier
        self.group = group
        self.logger = logger
    }

    /// The name a console route's device has in the service manager's file-descriptor store
    /// (`pty.ROUTE`, `serial.ROUTE`); nil for other routes.
    static func storeName(of route: RouteConfiguration) -> String? {
        switch route.target {
        case .pty: "pty.\(route.name)"
        case .serial: "serial.\(route.name)"
        case .unix: nil
        }
    }

    /// The name the pty master of a `serial:` route's link has in the store (`serial-link.ROUTE`).
    static func linkStoreName(of route: String) -> String {
        "serial-link.\(route)"
    }

    /// The store entry `name`, with the descriptor the service manager passed back under it, if
    /// any (more than one: the extra ones are closed).
    private func slot(named name: String) -> ConsoleStoreSlot {
        let restored = self.passed.claim(name: name)
        for extra in restored.dropFirst() { Glibc.close(extra.descriptor) }
        let notifier = self.notifier
        return ConsoleStoreSlot(
            name: name,
            restored: restored.first?.descriptor,
            store: { descriptor, name in notifier.store(descriptor: descriptor, name: name) },
            remove: { name in notifier.removeStored(name: name) }
        )
    }

    /// Opens the console of `route`, if it is a console route, and registers its hub.
    ///
    /// A `pty:` route takes back the pty the service manager passed, or allocates one, points its
    /// link at the slave and starts its hub. A `serial:` route sets up its pty link, if it has
    /// one, and opens its device; a device that is absent leaves the route down (retried with
    /// backoff), one that is locked by another process or otherwise unusable fails the open.
    func open(_ route: RouteConfiguration) async throws {
        guard let storeName = Self.storeName(of: route) else { return }
        let slot = self.slot(named: storeName)
        let console: any RouteConsole
        switch route.target {
        case .pty(let options):
            do {
                console = try await PtyConsole.open(
                    name: route.name,
                    link: options.link,
                    mode: options.mode,
                    group: options.group,
                    scrollback: options.scrollback,
                    lagLimit: options.lagLimit,
                    slot: slot,
                    on: self.group.next(),
                    logger: self.logger
                )
            } catch {
                throw BridgeError("route '\(route.name)': \(error)")
            }
        case .serial(let options):
            let serial = SerialConsole(
                name: route.name,
                device: options.device,
                settings: options.settings,
                scrollback: options.scrollback,
                lagLimit: options.lagLimit,
                eventLoop: self.group.next(),
                logger: self.logger,
                slot: slot
            )
            do {
                if let link = options.link {
                    serial.add(
                        link: try await SerialLink.open(
                            path: link.path,
                            mode: link.mode,
                            group: link.group,
                            settings: options.settings,
                            hub: serial.hub,
                            slot: self.slot(named: Self.linkStoreName(of: route.name)),
                            logger: self.logger
                        )
                    )
                }
                try await serial.start().get()
            } catch {
                await serial.close(forget: false)
                throw BridgeError("route '\(route.name)': \(error)")
            }
            console = serial
        case .unix:
            return
        }
        self.consoles.withLockedValue { $0[route.name] = console }
        self.environment.consoles.withLockedValue { $0[route.name] = console.hub }
        if let link = (console as? SerialConsole)?.link {
            self.environment.serialLinks.withLockedValue { $0[route.name] = link }
        }
        switch console {
        case let pty as PtyConsole:
            self.logger.info(
                pty.restored ? "console taken back from the service manager" : "console ready",
                metadata: ["route": "\(route.name)", "link": "\(pty.link)", "pty": "\(pty.pty.slavePath)"]
            )
        case let serial as SerialConsole:
            self.logger.info(
                serial.descriptor == nil ? "serial console waiting for its device" : "serial console ready",
                metadata: ["route": "\(route.name)", "device": "\(serial.device)", "settings": "\(serial.settings)"]
            )
            if let link = serial.link {
                self.logger.info(
                    link.restored ? "serial link taken back from the service manager" : "serial link ready",
                    metadata: ["route": "\(route.name)", "link": "\(link.path)", "pty": "\(link.pty.slavePath)"]
                )
            }
        default:
            break
        }
    }

    /// Closes the console of route `name`, if it has one. `forget`: the route is gone for good,
    /// so nothing of it is kept for a restart; otherwise (shutdown) a stored console stays.
    func close(_ name: String, forget: Bool) async {
        guard let console = self.consoles.withLockedValue({ $0.removeValue(forKey: name) }) else { return }
        self.environment.consoles.withLockedValue { $0[name] = nil }
        self.environment.serialLinks.withLockedValue { $0[name] = nil }
        await console.close(forget: forget)
    }

    /// Closes every console (on shutdown or a failed start), keeping stored ones for the next start.
    func closeAll() async {
        let names = self.consoles.withLockedValue { Array($0.keys) }
        for name in names { await self.close(name, forget: false) }
    }

    /// Stored consoles of routes that no longer exist: closed, and dropped from the store.
    func releaseStale() {
        let stale =
            self.passed.claim(prefix: "pty.") + self.passed.claim(prefix: "serial.")
            + self.passed.claim(prefix: "serial-link.")
        for stale in stale {
            Glibc.close(stale.descriptor)
            self.notifier.removeStored(name: stale.name)
            self.logger.notice(
                "released the stored console of a route that is no longer configured",
                metadata: ["name": "\(stale.name)"]
            )
        }
    }
}
