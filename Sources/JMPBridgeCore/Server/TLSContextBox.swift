import JMPTLS
import NIOConcurrencyHelpers
import NIOSSL

/// The TLS context of one `tcp:` listener. Each new connection takes the current one, so
/// replacing it (``BridgeServer/reloadTLS()``) changes what new connections get while
/// established connections keep theirs.
final class TLSContextBox: Sendable {
    /// The files the context is made from.
    let files: TLSFiles
    /// The listener's configured address, for messages, `status` and metrics.
    let listener: String
    private let current: NIOLockedValueBox<ServerTLSContext>

    /// Loads the files; errors name the file and what is wrong with it.
    init(files: TLSFiles, listener: String) throws(BridgeError) {
        self.files = files
        self.listener = listener
        self.current = NIOLockedValueBox(try TLSContextFactory.makeContext(files, listener: listener))
    }

    /// The context for a new connection.
    var context: NIOSSLContext { self.current.withLockedValue { $0.context } }

    /// When the certificate new connections get expires.
    var validity: CertificateValidity { self.current.withLockedValue { $0.validity } }

    /// When the first CA certificate of the `client-ca` new connections are checked against
    /// expires (nil: no mutual TLS).
    var clientAuthority: CertificateValidity? { self.current.withLockedValue { $0.clientAuthority } }

    /// When the certificate new connections get expires, then (with mutual TLS) when the first
    /// CA certificate of the `client-ca` does: what ``CertificateWatch`` looks at.
    var validities: [CertificateValidity] {
        self.current.withLockedValue { current in [current.validity] + (current.clientAuthority.map { [$0] } ?? []) }
    }

    /// Reads the files again, without installing the result.
    func load() throws(BridgeError) -> ServerTLSContext {
        try TLSContextFactory.makeContext(self.files, listener: self.listener)
    }

    /// Installs a context made by ``load()``.
    func install(_ context: ServerTLSContext) {
        self.current.withLockedValue { $0 = context }
    }
}
