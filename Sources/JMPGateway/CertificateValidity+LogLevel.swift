import JMPTLS
import Logging

extension CertificateValidity.Standing {
    /// How a certificate problem is logged: an error once the certificate has expired (every
    /// handshake that needs it fails), a warning while it only expires soon.
    public var logLevel: Logger.Level { self == .expired ? .error : .warning }
}
