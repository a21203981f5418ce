/// How the gateway checks the certificate of an upstream server.
public enum UpstreamTrust: Sendable, Hashable, CustomStringConvertible {
    /// TLS, the server's certificate checked against the system's CA certificates.
    case systemRoots
    /// TLS, the server's certificate checked against the CA certificates in this PEM file.
    case caFile(String)
    /// Plain HTTP/2 without TLS (h2c): for tests only.
    case insecure

    public var description: String {
        switch self {
        case .systemRoots: return "tls(system roots)"
        case .caFile(let path): return "tls(ca=\(path))"
        case .insecure: return "insecure"
        }
    }
}
