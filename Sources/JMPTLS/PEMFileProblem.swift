import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// Why a PEM file (a certificate, a key, CA certificates) could not be loaded, in the words an
/// operator needs: the system's reason when the file cannot be opened (no such file, permission
/// denied), else that its contents are not what was expected. NIOSSL alone reports a missing
/// file and a malformed one alike. Used for the gateway's CA files and the listeners' TLS files.
public enum PEMFileProblem {
    /// The reason `path` failed to load with `error`; `expected` names what the file should hold
    /// ("PEM certificate", "PEM private key").
    public static func describe(_ error: any Error, path: String, expected: String) -> String {
        if let reason = Self.unreadable(path) { return reason }
        if let error = error as? NIOSSLError {
            switch error {
            case .failedToLoadCertificate, .failedToLoadPrivateKey:
                return "not a \(expected) file"
            default:
                break
            }
        }
        return "\(error)"
    }

    /// The system's reason `path` cannot be read as a file (No such file or directory,
    /// Permission denied, Is a directory), or nil if it can; for any file the bridge loads, the
    /// `jwt:` key file too.
    public static func unreadable(_ path: String) -> String? {
        if access(path, R_OK) != 0 { return String(cString: strerror(errno)) }
        var status = stat()
        if stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR { return String(cString: strerror(EISDIR)) }
        return nil
    }
}
