import JMPTLS
import NIOSSL

/// Builds the TLS server context of a `tcp:` listener from PEM files, with errors that name the
/// file and what is wrong with it.
enum TLSContextFactory {
    static func makeContext(_ files: TLSFiles, listener: String) throws(BridgeError) -> ServerTLSContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
        } catch {
            throw BridgeError(
                "\(listener): cannot load TLS certificate \(files.certificate): "
                    + PEMFileProblem.describe(error, path: files.certificate, expected: "PEM certificate")
            )
        }
        guard let leaf = chain.first else {
            throw BridgeError("\(listener): \(files.certificate) holds no PEM certificate")
        }
        let validity = CertificateValidity(file: files.certificate, notValidAfter: Int64(leaf.notValidAfter))
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.key, format: .pem)
        } catch {
            let reason = PEMFileProblem.describe(error, path: files.key, expected: "PEM private key")
            throw BridgeError("\(listener): cannot load TLS key \(files.key): \(reason)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["h2"]
        let clientAuthority = try files.clientCA.map { (path) throws(BridgeError) in
            try Self.requireClientCertificates(signedBy: path, in: &configuration, listener: listener)
        }
        do {
            return ServerTLSContext(
                context: try NIOSSLContext(configuration: configuration),
                validity: validity,
                clientAuthority: clientAuthority
            )
        } catch NIOSSLError.failedToLoadPrivateKey {
            throw BridgeError("\(listener): TLS key \(files.key) does not fit certificate \(files.certificate)")
        } catch {
            throw BridgeError(
                "\(listener): cannot use TLS key \(files.key) with certificate \(files.certificate): \(error)"
            )
        }
    }

    /// Mutual TLS: every client must present a certificate that chains to a CA in `path`.
    /// Returns when the first of those CA certificates expires.
    static func requireClientCertificates(
        signedBy path: String,
        in configuration: inout TLSConfiguration,
        listener: String
    ) throws(BridgeError) -> CertificateValidity {
        let authorities: [NIOSSLCertificate]
        do {
            authorities = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            let reason = PEMFileProblem.describe(error, path: path, expected: "PEM certificate")
            throw BridgeError("\(listener): cannot load TLS client CA \(path): \(reason)")
        }
        guard let validity = CertificateValidity(authorities: authorities, file: path, kind: .clientAuthority) else {
            throw BridgeError("\(listener): \(path) holds no PEM certificate")
        }
        configuration.trustRoots = .certificates(authorities)
        // For a server, any verification also makes a client certificate mandatory.
        configuration.certificateVerification = .noHostnameVerification
        return validity
    }
}
