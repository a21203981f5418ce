import JMPSystemd
import NIOCore

extension BridgeServer {
    /// Binds the control socket, if one is configured.
    func bindControlSocket() async throws {
        guard let path = self.configuration.control else { return }
        let channel: any Channel
        if path.hasPrefix("systemd:") {
            let name = String(path.dropFirst(8))
            let passed = self.passedSockets(named: name)
            guard let socket = passed.first, passed.count == 1, socket.isListeningStreamSocket() else {
                throw BridgeStartupError(
                    "control \(path): needs exactly one passed listening socket named '\(name)' (got \(passed.count))"
                )
            }
            do {
                channel = try await ControlServer.bootstrap(environment: self.environment, group: self.group)
                    .withBoundSocket(socket.descriptor).get()
            } catch {
                throw BridgeStartupError("cannot serve the control socket \(path): \(BridgeServer.describe(error))")
            }
        } else {
            channel = try await ControlServer.bind(path: path, environment: self.environment, group: self.group)
        }
        self.controlChannel.withLockedValue { $0 = channel }
        self.logger.info("control socket bound", metadata: ["path": "\(path)"])
    }

    /// Closes the control socket (connections on it end when their consoles close).
    func closeControlSocket() async {
        let channel = self.controlChannel.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await channel?.close()
    }
}
