import JMPSystemd

/// A listener address: `tcp:HOST:PORT` (IPv6 as `tcp:[::1]:PORT`), `unix:PATH`, or `systemd:NAME`
/// (the sockets the service manager passed under `FileDescriptorName=NAME`).
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// A TCP socket.
    case tcp(host: String, port: Int)
    /// A Unix domain stream socket at a file-system path.
    case unix(path: String)
    /// Every socket the service manager passed with this name (socket activation).
    case systemd(name: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        case .systemd(let name): return "systemd:\(name)"
        }
    }

    /// Whether two listeners on this address would be the same socket: false only for TCP port 0,
    /// where the kernel picks a free port for each listener (tests and demos use it).
    public var isExclusive: Bool {
        if case .tcp(_, 0) = self { return false }
        return true
    }

    /// Parses an address, or says what is wrong with it.
    public static func parse(_ text: String) -> Result<ListenAddress, AddressError> {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { return .failure(AddressError("'unix:' needs a socket path")) }
            guard path.utf8.count < 108 else {
                return .failure(AddressError("unix socket path is longer than 107 bytes"))
            }
            return .success(.unix(path: path))
        }
        if text.hasPrefix("tcp:") {
            let rest = text.dropFirst(4)
            let host: Substring
            let port: Substring
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                    return .failure(AddressError("expected tcp:[IPV6]:PORT"))
                }
                host = rest[rest.index(after: rest.startIndex)..<close]
                port = rest[rest.index(close, offsetBy: 2)...]
            } else {
                guard let colon = rest.lastIndex(of: ":") else {
                    return .failure(AddressError("expected tcp:HOST:PORT"))
                }
                host = rest[..<colon]
                port = rest[rest.index(after: colon)...]
            }
            guard !host.isEmpty else { return .failure(AddressError("missing host in '\(text)'")) }
            guard let number = Int(port), (0...65535).contains(number) else {
                return .failure(AddressError("invalid port '\(port)'"))
            }
            return .success(.tcp(host: String(host), port: number))
        }
        if text.hasPrefix("systemd:") {
            let name = String(text.dropFirst(8))
            guard ServiceNotifier.isValidStoreName(name) else {
                return .failure(
                    AddressError(
                        "'systemd:' needs the socket's FileDescriptorName= (1 to 255 printable characters, no ':')"
                    )
                )
            }
            return .success(.systemd(name: name))
        }
        return .failure(
            AddressError("unknown address '\(text)' (expected tcp:HOST:PORT, unix:PATH or systemd:NAME)")
        )
    }

    /// What is wrong with an address.
    public struct AddressError: Error, Sendable, CustomStringConvertible {
        /// The explanation.
        public var description: String
        init(_ description: String) { self.description = description }
    }
}
