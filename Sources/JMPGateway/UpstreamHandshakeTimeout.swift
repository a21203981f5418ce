/// An upstream server accepted the TCP connection but did not finish the TLS handshake within
/// the connect timeout.
struct UpstreamHandshakeTimeout: Error, CustomStringConvertible {
    var description: String { "TLS handshake timed out" }
}
