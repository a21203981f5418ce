import JMPTargets
import NIOCore
import NIOPosix

extension BridgeServer {
    /// Opens the device of every `serial:` route and registers its hub with the consoles streams
    /// attach to. A device that is absent leaves its route down (retried with backoff); one that
    /// is locked by another process or otherwise unusable fails the start.
    func openSerialConsoles() async throws {
        for route in self.configuration.routes.values.sorted(by: { $0.name < $1.name }) {
            guard case .serial(let options) = route.target else { continue }
            let console = SerialConsole(
                name: route.name,
                device: options.device,
                settings: options.settings,
                scrollback: options.scrollback,
                lagLimit: options.lagLimit,
                eventLoop: self.group.next(),
                logger: self.logger
            )
            do {
                try await console.start().get()
            } catch {
                try? await console.close().get()
                throw BridgeStartupError("route '\(route.name)': \(error)")
            }
            self.serialConsoles.withLockedValue { $0[route.name] = console }
            self.environment.consoles.withLockedValue { $0[route.name] = console.hub }
            self.logger.info(
                console.descriptor == nil ? "serial console waiting for its device" : "serial console ready",
                metadata: [
                    "route": "\(route.name)", "device": "\(options.device)", "settings": "\(options.settings)",
                ]
            )
        }
    }

    /// Stops reopening and closes every serial device.
    func closeSerialConsoles() async {
        let consoles = self.serialConsoles.withLockedValue { consoles in
            defer { consoles = [:] }
            return Array(consoles.values)
        }
        for console in consoles {
            self.environment.consoles.withLockedValue { $0[console.hub.name] = nil }
            try? await console.close().get()
        }
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
