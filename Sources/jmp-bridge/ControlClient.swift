import JMPBridgeCore

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking connection to the bridge's control socket, for the `attach` and `status`
/// commands (a command-line client, not an event loop: blocking is fine here).
final class ControlClient {
    /// Why talking to the bridge failed, worded for the user.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The connected socket (blocking, close-on-exec), closed with the client.
    let fd: CInt

    private init(fd: CInt) {
        self.fd = fd
    }

    /// Connects to `path`, sends `request` and reads the reply line: returns once the bridge
    /// said `ok`, throws its message if it said `error …`.
    static func open(path: String, request: ControlRequest) throws(Failure) -> ControlClient {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(Self.errnoText())") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw Failure(description: "control socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = Self.errnoText()
            close(fd)
            throw Failure(
                description: "cannot connect to the control socket \(path): \(reason) (is jmp-bridge serving it?)"
            )
        }
        let client = ControlClient(fd: fd)
        guard client.writeAll(Array(request.line.utf8)) else {
            throw Failure(description: "cannot send the request: \(Self.errnoText())")
        }
        var line: [UInt8] = []
        while true {
            var byte: UInt8 = 0
            let count = read(fd, &byte, 1)
            if count < 0, errno == EINTR { continue }
            guard count == 1 else {
                throw Failure(description: "the bridge closed the control connection without a reply")
            }
            if byte == UInt8(ascii: "\n") { break }
            line.append(byte)
            guard line.count < 4096 else { throw Failure(description: "the bridge's reply is too long") }
        }
        let reply = String(decoding: line, as: UTF8.self)
        if reply == "ok" { return client }
        if reply.hasPrefix("error ") { throw Failure(description: String(reply.dropFirst(6))) }
        throw Failure(description: "unexpected reply from the bridge: \(reply)")
    }

    deinit { close(self.fd) }

    /// Writes everything (blocking); false on error.
    func writeAll(_ bytes: [UInt8]) -> Bool {
        writeFully(self.fd, bytes[...])
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR, waiting while EAGAIN; false on
/// any other error.
func writeFully(_ fd: CInt, _ bytes: ArraySlice<UInt8>) -> Bool {
    var offset = bytes.startIndex
    while offset < bytes.endIndex {
        let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written < 0 {
            if errno == EINTR { continue }
            if errno == EAGAIN {
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&poller, 1, -1)
                continue
            }
            return false
        }
        offset += written
    }
    return true
}
