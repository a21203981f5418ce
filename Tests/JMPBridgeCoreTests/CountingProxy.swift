import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// A Unix-socket relay between a test's client and the bridge that counts the bytes the bridge
/// has taken from the client (written into its socket), so a test can bound what the bridge holds
/// of a stream: taken minus what the target has read. Blocking sockets on threads of its own, one
/// connection at a time; it stops when the test's scope ends.
final class CountingProxy: Sendable {
    /// Where the client connects.
    let path: String
    private let upstream: String
    private let listener: CInt
    private let state = NIOLockedValueBox(State())

    private struct State {
        var forwarded = 0
        var mostHeld = 0
        var descriptors: [CInt] = []
    }

    /// Bytes the bridge has taken from the client so far.
    var forwarded: Int { self.state.withLockedValue { $0.forwarded } }
    /// The most the bridge held at once: taken minus `delivered()` after each write.
    var mostHeld: Int { self.state.withLockedValue { $0.mostHeld } }

    /// Listens at `path` and relays each connection to the bridge's socket `upstream`;
    /// `delivered` says how many bytes the target has read.
    init(path: String, upstream: String, delivered: @escaping @Sendable () -> Int) throws {
        self.path = path
        self.upstream = upstream
        self.listener = try UnixSocket.listen(path)
        let listener = self.listener
        Thread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }  // closed by stop()
                guard let bridge = try? UnixSocket.connect(self.upstream) else {
                    close(client)
                    continue
                }
                self.state.withLockedValue { $0.descriptors += [client, bridge] }
                Thread { [self] in
                    self.copy(from: client, to: bridge) { count in
                        self.state.withLockedValue { state in
                            state.forwarded += count
                            state.mostHeld = max(state.mostHeld, state.forwarded - delivered())
                        }
                    }
                }.start()
                Thread { [self] in self.copy(from: bridge, to: client) { _ in } }.start()
            }
        }.start()
    }

    /// Closes the listener and every relayed connection.
    func stop() {
        shutdown(self.listener, Int32(SHUT_RDWR))
        close(self.listener)
        unlink(self.path)
        for fd in self.state.withLockedValue({ $0.descriptors }) { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// Copies until EOF or an error, then passes the EOF on.
    private func copy(from source: CInt, to destination: CInt, counted: (Int) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(source, &buffer, buffer.count)
            guard count > 0 else { break }
            guard UnixSocket.writeAll(destination, buffer[..<count]) else { break }
            counted(count)
        }
        shutdown(destination, Int32(SHUT_WR))
    }
}

/// A Unix-socket target that reads at a set pace with plain read(2) calls (no buffering of its
/// own between the kernel and its count), keeps what it read, and half-closes at EOF.
final class PacedTarget: Sendable {
    private let received = NIOLockedValueBox<[UInt8]>([])
    private let listener: CInt
    /// Fired once the client's EOF has been read.
    let finished = Signal()

    /// Bytes read so far.
    var count: Int { self.received.withLockedValue { $0.count } }
    /// Everything read.
    var bytes: [UInt8] { self.received.withLockedValue { $0 } }

    /// Serves one connection at `path`, reading at most `chunk` bytes every `interval`.
    init(path: String, chunk: Int, interval: Duration) throws {
        self.listener = try UnixSocket.listen(path)
        let listener = self.listener
        Thread { [self] in
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            defer { close(connection) }
            var buffer = [UInt8](repeating: 0, count: chunk)
            let nanoseconds =
                interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000
            while true {
                let count = read(connection, &buffer, buffer.count)
                guard count > 0 else { break }
                self.received.withLockedValue { $0 += buffer[..<count] }
                var pause = timespec(
                    tv_sec: Int(nanoseconds / 1_000_000_000),
                    tv_nsec: Int(nanoseconds % 1_000_000_000)
                )
                nanosleep(&pause, nil)  // the pace of a slow device, not synchronisation
            }
            shutdown(connection, Int32(SHUT_WR))
            self.finished.fire()
        }.start()
    }

    /// Closes the listening socket.
    func stop() {
        shutdown(self.listener, Int32(SHUT_RDWR))
        close(self.listener)
    }
}

/// Blocking Unix-socket calls for the test peers above.
enum UnixSocket {
    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
        }
        return address
    }

    static func listen(_ path: String) throws -> CInt {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = Self.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        return fd
    }

    static func connect(_ path: String) throws -> CInt {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = Self.address(path)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
        return fd
    }

    static func writeAll(_ fd: CInt, _ bytes: ArraySlice<UInt8>) -> Bool {
        var rest = bytes
        while !rest.isEmpty {
            let written = rest.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            rest = rest.dropFirst(written)
        }
        return true
    }
}
