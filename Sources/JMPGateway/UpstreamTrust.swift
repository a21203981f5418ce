import JMPTLS
import NIOSSL

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

    /// A TLS client context and what it trusts.
    public struct ClientContext: Sendable {
        /// The context (nil: plain HTTP/2).
        public var context: NIOSSLContext?
        /// When the first certificate of the CA file expires (nil: none is configured).
        public var authorities: CertificateValidity?
    }

    /// The TLS client context for servers checked this way, its CA file loaded; what the
    /// gateway connects upstream with, and what `jmp-bridge check --files` loads.
    public func clientContext() throws(GatewayError) -> ClientContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = ["h2"]
        var validity: CertificateValidity?
        switch self {
        case .insecure:
            return ClientContext(context: nil, authorities: nil)
        case .systemRoots:
            configuration.trustRoots = .default
        case .caFile(let path):
            let authorities: [NIOSSLCertificate]
            do {
                authorities = try NIOSSLCertificate.fromPEMFile(path)
            } catch {
                let reason = PEMFileProblem.describe(error, path: path, expected: "PEM certificate")
                throw GatewayError("cannot read the CA certificates in \(path): \(reason)")
            }
            validity = CertificateValidity(authorities: authorities, file: path, kind: .upstreamAuthority)
            guard validity != nil else {
                throw GatewayError("\(path) holds no PEM certificate")
            }
            configuration.trustRoots = .certificates(authorities)
        }
        do {
            return ClientContext(context: try NIOSSLContext(configuration: configuration), authorities: validity)
        } catch {
            throw GatewayError("cannot set up TLS for \(self): \(error)")
        }
    }
}
