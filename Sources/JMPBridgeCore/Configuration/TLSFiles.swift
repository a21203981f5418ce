import JMPDoors
import NIOCore

/// PEM files for a TLS listener.
public struct TLSFiles: Sendable, Equatable {
    /// The certificate chain, leaf first.
    public var certificate: String
    /// The private key.
    public var key: String
    /// CA certificates (PEM) that client certificates must chain to; set: mutual TLS, every
    /// client must present a certificate.
    public var clientCA: String?

    /// Creates the pair.
    public init(certificate: String, key: String) {
        self.certificate = certificate
        self.key = key
    }
}
