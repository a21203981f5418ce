import JMPTLS
import NIOSSL

/// A listener's TLS server context, with the validity of the certificate it serves.
struct ServerTLSContext: Sendable {
    /// The context new connections get.
    let context: NIOSSLContext
    /// When the served (leaf) certificate expires.
    let validity: CertificateValidity
}
