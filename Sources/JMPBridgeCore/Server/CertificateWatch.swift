import JMPGateway
import JMPTLS
import Logging

/// Says in the log when a TLS listener's certificate is about to expire or has expired: at
/// start, after each reload of the TLS files, and every ``interval`` (a day) while the bridge
/// runs, so that a bridge that runs for months warns ``CertificateValidity/warningPeriod`` before
/// its clients start failing their handshakes. So for its CA files: a listener's `client-ca`
/// and the gateway's. A certificate with more time left is not logged.
/// Every ``interval`` it also has the gateway (if any) check the certificates its upstream
/// servers presented (`Gateway.checkUpstreamCertificates`), which it logs when first seen too.
struct CertificateWatch: Sendable {
    /// The TLS contexts to look at.
    let environment: BridgeContext
    /// How often ``run()`` looks.
    let interval: Duration
    let logger: Logger

    /// Checks every ``interval`` until cancelled.
    func run() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: self.interval) } catch { return }
            self.check()
            self.environment.gateway.withLockedValue { $0 }?.gateway.checkUpstreamCertificates()
        }
    }

    /// Logs each listener certificate and CA file that expires within the warning period (a
    /// warning) or has expired (an error), with the listener or gateway it belongs to; returns
    /// what it logged.
    @discardableResult
    func check(now: Int64 = CertificateValidity.now()) -> [String] {
        var logged: [String] = []
        var watched: [(validity: CertificateValidity, owner: (String, String))] = []
        for tls in self.environment.tlsContexts.withLockedValue({ $0 }) {
            watched += tls.validities.map { ($0, ("listener", tls.listener)) }
        }
        if let gateway = self.environment.gateway.withLockedValue({ $0 }) {
            watched += gateway.gateway.authorities.map { ($0, ("gateway", "\(gateway.configured)")) }
        }
        for (validity, owner) in watched {
            guard let problem = validity.problem(now: now) else { continue }
            let metadata: Logger.Metadata = [owner.0: "\(owner.1)", "expires": "\(validity.expires)"]
            self.logger.log(level: validity.standing(now: now).logLevel, "\(problem)", metadata: metadata)
            logged.append(problem)
        }
        return logged
    }
}
