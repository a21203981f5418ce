import JMPTLS
import Logging
import NIOConcurrencyHelpers

/// What the gateway knows of its upstream connections, for `status`, the metrics and the log:
/// the latest ``UpstreamConnectionStatus`` of each pooled connection (one per server and event
/// loop), as the pools report them, and the certificates the servers presented, warned of as
/// ``UpstreamCertificateWarnings`` says.
final class UpstreamStatusBook: Sendable {
    /// The controller: its connections have the role `controller`, every other server `router`.
    private let controller: UpstreamEndpoint
    private let statuses = NIOLockedValueBox<[String: UpstreamConnectionStatus]>([:])
    private let warnings: UpstreamCertificateWarnings

    init(controller: UpstreamEndpoint, logger: Logger) {
        self.controller = controller
        self.warnings = UpstreamCertificateWarnings(logger: logger)
    }

    /// Connection `id` now stands as `status`; nil: it was retired.
    func report(_ id: String, _ status: UpstreamConnectionStatus?, now: Int64 = CertificateValidity.now()) {
        let previous = self.statuses.withLockedValue { statuses in
            defer { statuses[id] = status }
            return statuses[id]
        }
        // A handshake presented a certificate (each stream's opening and end is reported too).
        if let status, let certificate = status.certificate, certificate != previous?.certificate {
            self.warnings.sighted(self.certificate(certificate, of: status.endpoint), now: now)
        }
    }

    /// Every connection's status.
    var all: [UpstreamConnectionStatus] { self.statuses.withLockedValue { Array($0.values) } }

    /// `controller` or `router`.
    func role(of endpoint: UpstreamEndpoint) -> String {
        endpoint == self.controller ? "controller" : "router"
    }

    /// The certificate each server presented at the latest handshake with it, sorted by server.
    func certificates() -> [UpstreamCertificate] {
        var latest: [UpstreamEndpoint: UpstreamConnectionStatus.PresentedCertificate] = [:]
        for status in self.all {
            guard let certificate = status.certificate else { continue }
            if let known = latest[status.endpoint], known.seen >= certificate.seen { continue }
            latest[status.endpoint] = certificate
        }
        return latest.sorted { $0.key.authority < $1.key.authority }.map { self.certificate($0.value, of: $0.key) }
    }

    /// Logs each certificate that expires within the warning period or has expired (the daily
    /// check); returns what it logged.
    func checkCertificates(now: Int64 = CertificateValidity.now()) -> [String] {
        self.warnings.check(self.certificates(), now: now)
    }

    private func certificate(
        _ presented: UpstreamConnectionStatus.PresentedCertificate,
        of endpoint: UpstreamEndpoint
    ) -> UpstreamCertificate {
        UpstreamCertificate(endpoint: endpoint, role: self.role(of: endpoint), notValidAfter: presented.notValidAfter)
    }
}
