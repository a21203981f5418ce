import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// When the certificate a TLS listener serves stops being valid, and how that is said: in
/// `status` (`certificate-expires=`), in the metric
/// `jmp_bridge_tls_certificate_expiry_timestamp_seconds`, in the log (``CertificateWatch``) and by
/// `check --files`. Clients refuse an expired certificate, so every connection to the listener
/// fails its handshake from that moment on; the bridge warns ``warningPeriod`` before.
///
/// A CA file (a listener's `client-ca`, the gateway's `ca`) is watched the same way, by the
/// first of its certificates to expire (``Kind``): once it has, the certificates it signed no
/// longer chain to it. Its expiry is in `status` (`client-ca-expires=`, `controller-ca-expires=`,
/// `router-ca-expires=`), the metric `jmp_bridge_tls_ca_certificate_expiry_timestamp_seconds`,
/// the `STATUS=` line, the log and `check --files`. Its ``Standing``, dates and wording of time
/// left are also how the gateway tells of the certificates its upstream servers present
/// (JMPGateway's `UpstreamCertificate`).
public struct CertificateValidity: Sendable, Equatable {
    /// From this long before expiry on, the log warns and `check --files` says so.
    public static let warningPeriod: Int64 = 14 * 86_400

    /// What the file holds, and so what its expiry means and what to do about it.
    public enum Kind: Sendable, Equatable {
        /// The certificate a listener serves: renew it, then reload.
        case served
        /// The CA certificates a listener checks its clients' certificates against (`client-ca`).
        case clientAuthority
        /// The CA certificates the gateway checks its upstream servers' certificates against.
        case upstreamAuthority
    }

    /// The certificate file.
    public let file: String
    /// Its leaf certificate's notAfter (for a CA file, the earliest of its certificates'), in
    /// seconds since the epoch.
    public let notValidAfter: Int64
    /// What the file holds.
    public let kind: Kind

    /// Describes the leaf certificate of `file`, or the first of its CA certificates to expire.
    public init(file: String, notValidAfter: Int64, kind: Kind = .served) {
        self.file = file
        self.notValidAfter = notValidAfter
        self.kind = kind
    }

    /// The validity of the CA file `file` holding `certificates`: that of the first to expire;
    /// nil if it holds none.
    public init?(authorities certificates: [NIOSSLCertificate], file: String, kind: Kind) {
        guard let earliest = certificates.map({ Int64($0.notValidAfter) }).min() else { return nil }
        self.init(file: file, notValidAfter: earliest, kind: kind)
    }

    /// Where the certificate stands at `now` (seconds since the epoch).
    public enum Standing: Sendable, Equatable {
        /// More than ``CertificateValidity/warningPeriod`` left.
        case valid
        /// Valid for less than ``CertificateValidity/warningPeriod``: this many whole days left.
        case expiresSoon(days: Int64)
        /// Past its notAfter: clients refuse it.
        case expired
    }

    /// Where the certificate stands at `now`.
    public func standing(now: Int64) -> Standing {
        Self.standing(of: self.notValidAfter, now: now)
    }

    /// Where a certificate valid until `notValidAfter` stands at `now`.
    public static func standing(of notValidAfter: Int64, now: Int64) -> Standing {
        let left = notValidAfter - now
        if left <= 0 { return .expired }
        if left < Self.warningPeriod { return .expiresSoon(days: left / 86_400) }
        return .valid
    }

    /// A sentence for the log and `check`, or nil while the certificate has more than
    /// ``warningPeriod`` left.
    public func problem(now: Int64) -> String? {
        let standing = self.standing(now: now)
        switch (self.kind, standing) {
        case (_, .valid):
            return nil
        case (.served, .expiresSoon(let days)):
            return
                "TLS certificate \(self.file) expires in \(Self.timeLeft(days)), at \(self.expires); renew it, then reload (SIGHUP)"
        case (.served, .expired):
            return
                "TLS certificate \(self.file) expired at \(self.expires): clients refuse it; renew it, then reload (SIGHUP)"
        case (.clientAuthority, _), (.upstreamAuthority, _):
            let when =
                if case .expiresSoon(let days) = standing {
                    "expires in \(Self.timeLeft(days)), at \(self.expires): from then on"
                } else {
                    "expired at \(self.expires):"
                }
            let refused =
                self.kind == .clientAuthority
                ? "(client-ca) \(when) the client certificates it signed are refused"
                : "\(when) the gateway refuses the server certificates it signed"
            return "CA certificate in \(self.file) \(refused); put the renewed CA in the file, then reload (SIGHUP)"
        }
    }

    /// For the `systemctl status` line: `TLS certificate of SUBJECT expires in N days`, or
    /// `... EXPIRED at TIME`; nil while a certificate valid until `notValidAfter` has more than
    /// ``warningPeriod`` left.
    public static func note(of subject: String, notValidAfter: Int64, now: Int64) -> String? {
        switch Self.standing(of: notValidAfter, now: now) {
        case .valid:
            return nil
        case .expiresSoon(let days):
            return "TLS certificate of \(subject) expires in \(Self.timeLeft(days))"
        case .expired:
            return "TLS certificate of \(subject) EXPIRED at \(Self.iso8601(notValidAfter))"
        }
    }

    /// For the `systemctl status` line, a CA file's: `CA certificate in FILE expires in N days`,
    /// or `... EXPIRED at TIME`; nil while it has more than ``warningPeriod`` left.
    public func authorityNote(now: Int64) -> String? {
        switch self.standing(now: now) {
        case .valid:
            return nil
        case .expiresSoon(let days):
            return "CA certificate in \(self.file) expires in \(Self.timeLeft(days))"
        case .expired:
            return "CA certificate in \(self.file) EXPIRED at \(self.expires)"
        }
    }

    /// `less than a day`, `1 day`, `N days`.
    public static func timeLeft(_ days: Int64) -> String {
        days == 0 ? "less than a day" : days == 1 ? "1 day" : "\(days) days"
    }

    /// The notAfter as ISO 8601 in UTC: `2027-01-31T12:00:00Z`.
    public var expires: String { Self.iso8601(self.notValidAfter) }

    /// `seconds` since the epoch as ISO 8601 in UTC.
    public static func iso8601(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil else { return "\(seconds)" }
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
            + "T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }

    /// This machine's wall clock, in seconds since the epoch.
    public static func now() -> Int64 { Int64(time(nil)) }
}
