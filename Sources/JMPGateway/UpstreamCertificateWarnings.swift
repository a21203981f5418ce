import JMPTLS
import Logging
import NIOConcurrencyHelpers

/// Says in the log when the certificate of an upstream server expires within
/// ``CertificateValidity/warningPeriod``, or has expired: when a connection first sees it, at
/// most once a day per server, and at each daily check (``check(_:now:)``) while the server is
/// known. A renewed certificate (another notAfter) is news at once.
final class UpstreamCertificateWarnings: Sendable {
    private struct Warned {
        var notValidAfter: Int64
        var at: Int64
    }

    private let logger: Logger
    private let warned = NIOLockedValueBox<[UpstreamEndpoint: Warned]>([:])

    init(logger: Logger) {
        self.logger = logger
    }

    /// A connection saw `certificate`: warns unless the same certificate was warned of in the
    /// last day.
    func sighted(_ certificate: UpstreamCertificate, now: Int64 = CertificateValidity.now()) {
        guard let problem = certificate.problem(now: now) else { return }
        let due = self.warned.withLockedValue { warned in
            if let last = warned[certificate.endpoint], last.notValidAfter == certificate.notValidAfter,
                now - last.at < 86_400
            {
                return false
            }
            warned[certificate.endpoint] = Warned(notValidAfter: certificate.notValidAfter, at: now)
            return true
        }
        if due { self.log(problem, certificate, now: now) }
    }

    /// Logs the problem of each of `certificates` (the servers known now), forgetting the
    /// others; returns what it logged.
    func check(_ certificates: [UpstreamCertificate], now: Int64 = CertificateValidity.now()) -> [String] {
        var logged: [String] = []
        var warned: [UpstreamEndpoint: Warned] = [:]
        for certificate in certificates {
            guard let problem = certificate.problem(now: now) else { continue }
            warned[certificate.endpoint] = Warned(notValidAfter: certificate.notValidAfter, at: now)
            self.log(problem, certificate, now: now)
            logged.append(problem)
        }
        self.warned.withLockedValue { $0 = warned }
        return logged
    }

    private func log(_ problem: String, _ certificate: UpstreamCertificate, now: Int64) {
        let metadata: Logger.Metadata = ["upstream": "\(certificate.endpoint)", "expires": "\(certificate.expires)"]
        self.logger.log(level: certificate.standing(now: now).logLevel, "gateway: \(problem)", metadata: metadata)
    }
}
