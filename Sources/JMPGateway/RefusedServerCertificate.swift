import JMPTLS

/// A TLS handshake with an upstream server that failed certificate verification
/// (`CERTIFICATE_VERIFY_FAILED`), with the dates of the certificate the server presented: BoringSSL
/// fails an expired certificate, one not valid yet and one from an unknown CA alike, and only the
/// dates tell the first two apart, which are not the operator's CA file at fault.
struct RefusedServerCertificate: Error {
    /// NIOSSL's handshake error.
    var error: any Error
    /// The leaf certificate's notBefore and notAfter, in seconds since the epoch.
    var notValidBefore: Int64
    var notValidAfter: Int64

    /// What is wrong with the dates at `now`, or nil if they are not the reason.
    func reason(now: Int64) -> String? {
        if now > self.notValidAfter {
            return "TLS: the server's certificate expired at \(CertificateValidity.iso8601(self.notValidAfter)); "
                + "the cluster's administrators must renew it"
        }
        if now < self.notValidBefore {
            return
                "TLS: the server's certificate is valid only from \(CertificateValidity.iso8601(self.notValidBefore)), "
                + "and this host's clock says \(CertificateValidity.iso8601(now)): check the clock (timedatectl)"
        }
        return nil
    }
}
