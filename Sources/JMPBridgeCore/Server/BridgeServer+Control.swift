import NIOCore

extension BridgeServer {
    /// Binds the control socket, if one is configured.
    func bindControlSocket() async throws {
        guard let path = self.configuration.control else { return }
        let channel = try await ControlServer.bind(path: path, environment: self.environment, group: self.group)
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
