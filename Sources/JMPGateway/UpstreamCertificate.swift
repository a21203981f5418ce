import JMPTLS

/// The certificate an upstream server (the controller or a router) presented to the gateway at
/// its last TLS handshake, as `status` (`certificate-expires=` on the `upstream` line), the
/// metric `jmp_bridge_gateway_upstream_certificate_expiry_timestamp_seconds` and the log show
/// it. The cluster's administrators renew it, not the lab's; but once it has expired every
/// exporter behind the gateway fails its calls, so the gateway says so
/// ``CertificateValidity/warningPeriod`` before (``UpstreamCertificateWarnings``).
public struct UpstreamCertificate: Sendable, Equatable {
    /// The server.
    public var endpoint: UpstreamEndpoint
    /// `controller` or `router`.
    public var role: String
    /// Its leaf certificate's notAfter, in seconds since the epoch.
    public var notValidAfter: Int64

    /// Describes the certificate `endpoint` presented.
    public init(endpoint: UpstreamEndpoint, role: String, notValidAfter: Int64) {
        self.endpoint = endpoint
        self.role = role
        self.notValidAfter = notValidAfter
    }

    /// The notAfter as ISO 8601 in UTC.
    public var expires: String { CertificateValidity.iso8601(self.notValidAfter) }

    /// Where it stands at `now`.
    public func standing(now: Int64) -> CertificateValidity.Standing {
        CertificateValidity.standing(of: self.notValidAfter, now: now)
    }

    /// A sentence for the log, or nil while the certificate has more than the warning period
    /// left.
    public func problem(now: Int64) -> String? {
        let subject = "the \(self.role)'s TLS certificate (\(self.endpoint))"
        switch self.standing(now: now) {
        case .valid:
            return nil
        case .expiresSoon(let days):
            return "\(subject) expires in \(CertificateValidity.timeLeft(days)), at \(self.expires): from then on "
                + "the gateway refuses it and every exporter's calls through it fail; the cluster's administrators "
                + "must renew it"
        case .expired:
            return "\(subject) expired at \(self.expires): connections open before go on, new ones fail; "
                + "the cluster's administrators must renew it"
        }
    }

    /// For the `systemctl status` line: nil while it has more than the warning period left.
    public func note(now: Int64) -> String? {
        CertificateValidity.note(of: "\(self.role) \(self.endpoint)", notValidAfter: self.notValidAfter, now: now)
    }
}
