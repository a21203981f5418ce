import JMPTLS

extension TLSHandshakeFailure {
    /// What went wrong when the gateway connected to the upstream server `endpoint`, whose
    /// certificate it checks as `trust` says.
    public func asClient(_ endpoint: UpstreamEndpoint, trust: UpstreamTrust) -> String {
        let authorities: String
        switch trust {
        case .caFile(let path): authorities = "the CA certificates in \(path)"
        default: authorities = "the system's CA certificates"
        }
        switch self.code {
        case "CERTIFICATE_VERIFY_FAILED":
            return "TLS: the server's certificate does not chain to \(authorities)"
        case "HOSTNAME_MISMATCH":
            return "TLS: the server's certificate is not for \(endpoint.host) (not among its subject alternative names)"
        case "EOF":
            return "TLS: the server closed the connection during the handshake (does it speak TLS on this port?)"
        case "WRONG_VERSION_NUMBER":
            return "TLS: the server does not speak TLS on this port (plain HTTP/2 needs 'insecure: true')"
        case "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION":
            return "TLS: no TLS version in common with the server"
        case "TLSV13_ALERT_CERTIFICATE_REQUIRED":
            return "TLS: the server requires a client certificate, which the gateway does not present"
        default:
            if let alert = self.alert { return "TLS: the server ended the handshake (alert: \(alert))" }
            return "TLS handshake failed (\(self.code))"
        }
    }
}
