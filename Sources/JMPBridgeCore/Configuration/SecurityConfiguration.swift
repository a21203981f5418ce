import NIOCore

extension ListenerConfiguration {
    /// The authentication this listener applies: what it says, else `jwt` when a `jwt:` section
    /// exists, else `none`.
    public func effectiveAuth(jwtConfigured: Bool) -> ListenerAuth {
        self.auth ?? (jwtConfigured ? .jwt : .none)
    }
}

extension BridgeConfiguration {
    /// Checks the security settings of the merged configuration: `auth: jwt` needs a `jwt:`
    /// section, and a `tcp:` listener without authentication must say
    /// `allow-unauthenticated: true`.
    public func validateSecurity() throws(ConfigurationError) {
        let origin = self.source ?? "command line"
        for listener in self.listeners {
            let auth = listener.effectiveAuth(jwtConfigured: self.jwt != nil)
            if auth == .jwt, self.jwt == nil {
                throw ConfigurationError(
                    file: origin,
                    line: listener.line,
                    key: "listen",
                    "\(listener.address) has 'auth: jwt' but there is no 'jwt:' section (key-file)"
                )
            }
            if case .tcp = listener.address, auth == .none, !listener.allowUnauthenticated {
                throw ConfigurationError(
                    file: origin,
                    line: listener.line,
                    key: "listen",
                    "\(listener.address) would accept streams without authentication: configure 'jwt:' "
                        + "or say 'allow-unauthenticated: true' (--allow-unauthenticated)"
                )
            }
        }
    }
}
