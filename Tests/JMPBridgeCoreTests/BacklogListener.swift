import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A Unix-socket listener made with plain system calls and a listen backlog of 1, which
/// ``fillBacklog()`` fills, so that the kernel answers every further non-blocking connect with
/// `EAGAIN` (a busy exporter) until the test starts accepting.
final class BacklogListener: Sendable {
    struct SystemCallFailed: Error, CustomStringConvertible {
        let call: String
        let errno: Int32
        var description: String { "\(self.call): \(String(cString: strerror(self.errno)))" }
    }

    let descriptor: Int32

    init(path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallFailed(call: "socket", errno: errno) }
        self.descriptor = fd
        var address = try Self.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else { throw SystemCallFailed(call: "bind", errno: errno) }
        guard listen(fd, 1) == 0 else { throw SystemCallFailed(call: "listen", errno: errno) }
    }

    deinit {
        close(self.descriptor)
    }

    static func address(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw SystemCallFailed(call: "sockaddr_un", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return address
    }

    /// Connects non-blocking clients to `path` until the kernel answers `EAGAIN`; returns their
    /// descriptors (the caller closes them).
    static func fillBacklog(of path: String) throws -> [Int32] {
        var clients: [Int32] = []
        var address = try Self.address(path)
        while true {
            let fd = socket(
                AF_UNIX,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                0
            )
            guard fd >= 0 else { throw SystemCallFailed(call: "socket", errno: errno) }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if result == 0 {
                clients.append(fd)
                continue
            }
            let error = errno
            close(fd)
            if error == EAGAIN { return clients }
            for client in clients { close(client) }
            throw SystemCallFailed(call: "connect", errno: error)
        }
    }

    /// Accepts one connection, blocking; returns its descriptor.
    func accept() throws -> Int32 {
        let fd = Glibc.accept(self.descriptor, nil, nil)
        guard fd >= 0 else { throw SystemCallFailed(call: "accept", errno: errno) }
        return fd
    }

    /// Reads `fd` until EOF, echoing everything back, then half-closes and closes it.
    static func echo(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        loop: while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            var offset = 0
            while offset < count {
                let written = buffer[offset..<count].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                guard written > 0 else { break loop }
                offset += written
            }
        }
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }
}
