import JMPTargets
import NIOCore
import NIOPosix

extension BridgeServer {
    /// Opens the device of a `serial:` route and registers its hub with the consoles streams
    /// attach to. A device that is absent leaves its route down (retried with backoff); one that
    /// is locked by another process or otherwise unusable fails the start (or the reload).
    ///
    /// Every time the device is opened its descriptor goes to the service manager's
    /// file-descriptor store as `serial.ROUTE`, and a restarted bridge takes it back: the device
    /// is never closed across a restart (no DTR drop), and it stays locked for this bridge.
    func openSerialConsole(_ name: String, _ options: SerialConfiguration) async throws {
        let storeName = Self.storeName(ofSerial: name)
        let restored = self.passedSockets(named: storeName)
        for extra in restored.dropFirst() { close(extra.descriptor) }
        let notifier = self.notifier
        let console = SerialConsole(
            name: name,
            device: options.device,
            settings: options.settings,
            scrollback: options.scrollback,
            lagLimit: options.lagLimit,
            eventLoop: self.group.next(),
            logger: self.logger,
            onOpened: { fd in
                // The stored copy of a device that was unplugged is stale: replace it.
                notifier.removeStored(name: storeName)
                notifier.store(descriptor: fd, name: storeName)
            }
        )
        do {
            try await console.start(adopting: restored.first?.descriptor).get()
        } catch {
            try? await console.close().get()
            throw BridgeStartupError("route '\(name)': \(error)")
        }
        self.serialConsoles.withLockedValue { $0[name] = console }
        self.environment.consoles.withLockedValue { $0[name] = console.hub }
        self.logger.info(
            console.descriptor == nil ? "serial console waiting for its device" : "serial console ready",
            metadata: ["route": "\(name)", "device": "\(options.device)", "settings": "\(options.settings)"]
        )
    }

    /// The name a serial route's device has in the service manager's file-descriptor store.
    static func storeName(ofSerial route: String) -> String { "serial.\(route)" }

    /// Stops reopening and closes the serial device of route `name`; false if it has none.
    /// `forget`: the route is gone, so the service manager drops its stored copy too.
    func closeSerialConsole(_ name: String, forget: Bool) async -> Bool {
        guard let console = self.serialConsoles.withLockedValue({ $0.removeValue(forKey: name) }) else {
            return false
        }
        self.environment.consoles.withLockedValue { $0[name] = nil }
        try? await console.close().get()
        if forget { self.notifier.removeStored(name: Self.storeName(ofSerial: name)) }
        return true
    }

    /// The device descriptor of every console that has one now, by route name: the pty master of
    /// a `pty:` route, the open device of a `serial:` route. NIO owns them: duplicate one to keep
    /// it (e.g. in systemd's file-descriptor store), never close it.
    public func consoleDescriptors() -> [String: CInt] {
        self.environment.consoles.withLockedValue { consoles in
            consoles.compactMapValues { $0.descriptor }
        }
    }
}
