/// A gRPC server the gateway dials: the controller, or a router named by a `ListenResponse`.
///
/// Parsed from what Jumpstarter puts in configurations and messages: `host:port`, `[v6]:port`,
/// gRPC's `dns:///host:port` or `dns:host:port`, or a bare host (port 443, gRPC's default for
/// TLS).
public struct UpstreamEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    /// TCP port.
    public var port: Int

    /// Creates an endpoint.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses a gRPC target; nil if it is not a TCP host and port.
    public init?(parsing text: String) {
        var rest = Substring(text)
        if rest.hasPrefix("dns:///") {
            rest = rest.dropFirst(7)
        } else if rest.hasPrefix("dns:") {
            rest = rest.dropFirst(4)
        }
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            guard rest.firstIndex(of: ":") == colon else { return nil }  // an IPv6 address needs brackets
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        var port = 443
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else { return nil }
            port = number
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "@" }) else { return nil }
        self.init(host: String(host), port: port)
    }

    /// The `:authority` of requests to it.
    public var authority: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    public var description: String { self.authority }
}
