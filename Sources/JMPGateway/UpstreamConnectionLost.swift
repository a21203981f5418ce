import NIOSSL

/// Why a call's upstream stream ended with its connection: the reason in the exporter's
/// UNAVAILABLE "lost the call" and on the log line of the connection's close.
struct UpstreamConnectionLost: Error, CustomStringConvertible {
    /// The connection error that ended the connection, if one did.
    let error: (any Error)?

    init(_ error: (any Error)?) {
        self.error = error
    }

    var description: String {
        switch self.error {
        case nil:
            return "the connection closed"
        case NIOSSLError.uncleanShutdown?:
            // TCP closed without TLS close_notify: the server went, or dropped the connection.
            return "the server closed the connection"
        case let error?:
            return "the connection failed: \(error)"
        }
    }
}
