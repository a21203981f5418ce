import NIOSSL

/// Builds the TLS server context of a `tcp:` listener from PEM files, with errors that name the
/// file and what is wrong with it.
enum TLSContextFactory {
    static func makeContext(_ files: TLSFiles, listener: String) throws(BridgeStartupError) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
        } catch {
            throw BridgeStartupError(
                "\(listener): cannot load TLS certificate \(files.certificate): \(Self.describe(error))"
            )
        }
        guard !chain.isEmpty else {
            throw BridgeStartupError("\(listener): \(files.certificate) holds no PEM certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.key, format: .pem)
        } catch {
            throw BridgeStartupError("\(listener): cannot load TLS key \(files.key): \(Self.describe(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["h2"]
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw BridgeStartupError(
                "\(listener): TLS key \(files.key) does not fit certificate \(files.certificate): \(Self.describe(error))"
            )
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOSSLError {
            switch error {
            case .failedToLoadCertificate: return "not a readable PEM certificate"
            case .failedToLoadPrivateKey: return "not a readable PEM private key"
            default: return "\(error)"
            }
        }
        return "\(error)"
    }
}
