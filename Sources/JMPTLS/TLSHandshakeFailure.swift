import NIOSSL

/// A TLS handshake that failed, told in the words an operator can act on, for both sides the
/// bridge plays: the server of its listeners (``asServer``) and the gateway's client side towards
/// the controller and the routers (JMPGateway's `asClient`).
///
/// NIOSSL reports these as BoringSSL's error strings, with the path of the source file inside
/// the build tree; what matters is BoringSSL's reason (`CERTIFICATE_VERIFY_FAILED`,
/// `TLSV1_ALERT_UNKNOWN_CA`, ...), kept as ``code`` for the log, and what it most often means.
public struct TLSHandshakeFailure: Sendable, Equatable {
    /// BoringSSL's reason, `EOF` when the peer closed the connection during the handshake, or
    /// `HOSTNAME_MISMATCH` when the server's certificate is not for the name connected to.
    public var code: String

    /// The failure `error` describes; nil for an error that is not a failed TLS handshake.
    public init?(_ error: any Error) {
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname {
            self.code = "HOSTNAME_MISMATCH"
            return
        }
        guard case NIOSSLError.handshakeFailed(let failure) = error else { return nil }
        let text = "\(failure)"
        if let code = Self.reason(in: text) {
            self.code = code
        } else if text.contains("EOF during handshake") {
            self.code = "EOF"
        } else {
            return nil
        }
    }

    /// Builds a failure from a known code (for tests and messages).
    package init(code: String) {
        self.code = code
    }

    /// BoringSSL's reason in `text`: the upper-case word after `OPENSSL_internal:`, the TLS
    /// layer's (`SSL routines`) if there is one. A certificate whose signature does not verify
    /// queues the crypto library's `BAD_SIGNATURE` before the TLS layer's
    /// `CERTIFICATE_VERIFY_FAILED`, which is what it means for the handshake.
    package static func reason(in text: String) -> String? {
        let marker =
            text.firstRange(of: "SSL routines:OPENSSL_internal:") ?? text.firstRange(of: "OPENSSL_internal:")
        guard let marker else { return nil }
        let reason = text[marker.upperBound...].prefix { $0.isUppercase || $0.isNumber || $0 == "_" }
        return reason.isEmpty ? nil : String(reason)
    }

    /// The alert the peer sent, in its RFC name (`unknown ca`), if the code is one.
    package var alert: String? {
        guard let range = self.code.firstRange(of: "_ALERT_") else { return nil }
        return self.code[range.upperBound...].lowercased().replacing("_", with: " ")
    }

    private static let certificateAlerts: Set<String> = [
        "bad certificate", "certificate unknown", "unknown ca", "certificate expired",
        "unsupported certificate", "certificate revoked", "decrypt error",
    ]

    /// What went wrong when a client connected to one of the bridge's TLS listeners.
    public var asServer: String {
        switch self.code {
        case "EOF":
            return "the client closed the connection before the handshake ended, as a client does that does "
                + "not trust the bridge's certificate (check the CA it trusts, e.g. a Jumpstarter exporter's "
                + "tls.ca) or a port check that only connects"
        case "CERTIFICATE_VERIFY_FAILED":
            return "the client's certificate does not chain to the listener's client-ca"
        case "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "the client sent no certificate, and the listener's client-ca requires one"
        case "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST":
            return "the client does not speak TLS (plain HTTP/2 or HTTP/1.1 sent to a TLS listener)"
        case "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION":
            return "no TLS version in common: the bridge speaks TLS 1.2 and 1.3"
        case "NO_SHARED_CIPHER":
            return "no cipher suite in common"
        default:
            if let alert = self.alert, Self.certificateAlerts.contains(alert) {
                return "the client refused the bridge's certificate (alert: \(alert)): check the CA it trusts "
                    + "and the certificate's names and dates"
            }
            if let alert = self.alert { return "the client ended the handshake (alert: \(alert))" }
            return "the handshake failed (\(self.code))"
        }
    }
}
