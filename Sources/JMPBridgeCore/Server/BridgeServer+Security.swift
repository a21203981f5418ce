#if canImport(Glibc)
    import Glibc
#endif

extension BridgeServer {
    /// Reads the `jwt:` key file, if there is a `jwt:` section.
    static func loadVerifier(_ configuration: JWTConfiguration?) async throws(BridgeStartupError) -> TokenVerifier? {
        guard let configuration else { return nil }
        return try await TokenVerifier.load(configuration)
    }

    /// What `listener` demands of its connections and streams. (A `tcp:` socket without
    /// authentication is logged as a warning once bound, with its real address: see start().)
    func security(of listener: ListenerConfiguration, verifier: TokenVerifier?) -> ListenerSecurity {
        let auth = listener.effectiveAuth(jwtConfigured: self.configuration.jwt != nil)
        return ListenerSecurity(
            listener: "\(listener.address)",
            verifier: auth == .jwt ? verifier : nil,
            peer: listener.peer
        )
    }

    /// Gives a `unix:` listener's socket file to `group` (a name or a numeric id).
    static func setGroup(_ group: String, of path: String) throws(BridgeStartupError) {
        let gid: gid_t
        if let number = UInt32(group) {
            gid = number
        } else if let entry = getgrnam(group) {
            gid = entry.pointee.gr_gid
        } else {
            throw BridgeStartupError("unix:\(path): unknown group '\(group)'")
        }
        guard chown(path, uid_t.max, gid) == 0 else {
            throw BridgeStartupError("cannot set group \(group) on \(path): \(String(cString: strerror(errno)))")
        }
    }
}
