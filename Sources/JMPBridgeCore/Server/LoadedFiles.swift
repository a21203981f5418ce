import JMPTLS
/// What ``BridgeConfiguration/loadFiles()`` loaded: how many files, the certificate each TLS
/// listener would serve and each CA file (a `client-ca`, the gateway's `ca`), located at its key,
/// and the serial devices that cannot be opened now.
public struct LoadedFiles: Sendable {
    /// How many files were loaded.
    public var count = 0
    /// Each TLS listener's certificate and CA file: its key (file, line, key) and its validity.
    public var certificates: [(at: ConfigurationError, validity: CertificateValidity)] = []

    /// `FILE:LINE: KEY: PROBLEM` for each serial device `serve` would have to wait for.
    public var devices: [String] = []

    /// `FILE:LINE: KEY: PROBLEM` for each certificate that expires within
    /// ``CertificateValidity/warningPeriod`` of `now`, or has expired, then each serial device
    /// that cannot be opened now.
    public func warnings(now: Int64 = CertificateValidity.now()) -> [String] {
        self.certificates.compactMap { certificate in
            guard let problem = certificate.validity.problem(now: now) else { return nil }
            var located = certificate.at
            located.message = problem
            return located.description
        } + self.devices
    }
}
