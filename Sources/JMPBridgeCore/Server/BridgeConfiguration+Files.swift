import JMPGateway

extension BridgeConfiguration {
    /// Loads every file `serve` loads when it starts, as it loads them, without binding or
    /// connecting anything: each listener's TLS certificate, key and client CA, the `jwt:` key
    /// file and the gateway's CA files; then checks that the sockets and console links `serve`
    /// creates can be created (``checkCreatedFiles()``). `jmp-bridge check --files` runs this,
    /// so that a file that would stop the start is found before a restart.
    ///
    /// - Returns: how many files were loaded, when each listener's certificate and each CA
    ///   file expires, and the serial devices that cannot be opened now.
    /// - Throws: the first file that cannot be loaded, located at its key
    ///   (`FILE:LINE: KEY: PROBLEM`), worded as `serve` words it.
    public func loadFiles() async throws(ConfigurationError) -> LoadedFiles {
        let origin = self.source ?? "command line"
        var loaded = LoadedFiles()
        var listeners = self.listeners.map { ($0, "listen") }
        if let gateway = self.gateway { listeners.append((gateway.listener, "gateway.listen")) }
        for (listener, key) in listeners {
            guard let files = listener.tls else { continue }
            let location = ConfigurationError(file: origin, line: listener.line, key: "\(key).tls", "")
            do {
                let context = try TLSContextFactory.makeContext(files, listener: "\(listener.address)")
                loaded.certificates.append((location, context.validity))
                if let authority = context.clientAuthority { loaded.certificates.append((location, authority)) }
            } catch {
                var located = location
                located.message = error.description
                throw located
            }
            loaded.count += files.clientCA == nil ? 2 : 3
        }
        if let jwt = self.jwt {
            do {
                _ = try await TokenVerifier.load(jwt)
            } catch {
                throw ConfigurationError(file: origin, line: jwt.line, error.description)
            }
            loaded.count += 1
        }
        if let gateway = self.gateway {
            let trusts = [
                ("gateway.controller", gateway.controllerTrust, gateway.controllerLine),
                ("gateway.router", gateway.routerTrust, gateway.routerLine),
            ]
            for case (let key, let trust?, let line) in trusts {
                let location = ConfigurationError(file: origin, line: line ?? gateway.line, key: "\(key).ca", "")
                do {
                    if let authorities = try trust.clientContext().authorities {
                        loaded.certificates.append((location, authorities))
                    }
                } catch {
                    var located = location
                    located.message = error.description
                    throw located
                }
                if case .caFile = trust { loaded.count += 1 }
            }
        }
        loaded.devices = try self.checkCreatedFiles()
        return loaded
    }
}
