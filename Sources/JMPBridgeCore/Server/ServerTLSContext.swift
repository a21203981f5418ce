import JMPTLS
import NIOSSL

/// A listener's TLS server context, with the validity of the certificate it serves and of its
/// `client-ca`.
struct ServerTLSContext: Sendable {
    /// The context new connections get.
    let context: NIOSSLContext
    /// When the served (leaf) certificate expires.
    let validity: CertificateValidity
    /// When the first CA certificate of its `client-ca` expires (nil: no mutual TLS).
    let clientAuthority: CertificateValidity?
}
