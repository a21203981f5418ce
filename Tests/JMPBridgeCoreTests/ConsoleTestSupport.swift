import CJMPSystem
import Foundation
import NIOConcurrencyHelpers
import NIOPosix

/// Threads for the tests' blocking system calls (reads with a timeout on ptys and sockets), so
/// they never hold the few threads of Swift's cooperative pool that the gRPC client, the tests'
/// tasks and the bridge's async code need; several suites run at once.
let blockingPool: NIOThreadPool = {
    let pool = NIOThreadPool(numberOfThreads: 8)
    pool.start()
    return pool
}()

/// Runs a blocking call on ``blockingPool``.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await blockingPool.runIfActive(body)
}

/// A fake serial device: a real pty whose slave is reached through a symlink (the "device path"
/// given to a `serial:` route), while the test plays the board on the master. Unplugging closes
/// the master (the bridge's reads fail) and removes the path; ``plugIn(at:)`` makes a new one.
final class FakeSerialDevice: Sendable {
    let master: CInt
    let slavePath: String
    let path: String

    private init(master: CInt, slavePath: String, path: String) {
        self.master = master
        self.slavePath = slavePath
        self.path = path
    }

    /// Allocates a pty and points `path` at its slave.
    static func plugIn(at path: String) throws -> FakeSerialDevice {
        var name = [CChar](repeating: 0, count: 128)
        let master = jmp_open_pty_master(&name, name.count)
        guard master >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        // Blocking, for the test's simple reads and writes.
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) & ~O_NONBLOCK)
        let slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        unlink(path)
        guard symlink(slavePath, path) == 0 else {
            close(master)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        return FakeSerialDevice(master: master, slavePath: slavePath, path: path)
    }

    /// The board goes away: the master is closed and the device path removed.
    func unplug() {
        unlink(self.path)
        close(self.master)
    }

    /// What the board "sends".
    func write(_ bytes: [UInt8]) throws {
        try writeAll(self.master, bytes)
    }

    /// What arrived at the board within `timeout` seconds (empty if nothing came).
    func read(timeout: Double) async throws -> [UInt8] {
        let master = self.master
        return try await blocking { try readAvailable(master, timeout: timeout) }
    }

    /// Reads until `count` bytes arrived (or `timeout` seconds passed without any).
    func read(count: Int, timeout: Double = 10) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            let more = try await self.read(timeout: timeout)
            if more.isEmpty { break }
            bytes += more
        }
        return bytes
    }

    /// Sets HUPCL, as a real serial port has it by default (setting it on the master sets the
    /// slave's).
    func setHangUpOnClose() {
        var attributes = self.attributes()
        attributes.c_cflag |= tcflag_t(HUPCL)
        _ = tcsetattr(self.master, TCSANOW, &attributes)
    }

    /// The line settings as the slave has them (`tcgetattr` on the master reports the slave's).
    func attributes() -> termios {
        var attributes = termios()
        _ = tcgetattr(self.master, &attributes)
        return attributes
    }
}

func writeAll(_ fd: CInt, _ bytes: [UInt8]) throws {
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        offset += written
    }
}

func readAvailable(_ fd: CInt, timeout: Double) throws -> [UInt8] {
    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&poller, 1, Int32(timeout * 1000)) > 0 else { return [] }
    var buffer = [UInt8](repeating: 0, count: 65536)
    let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
    guard count >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    return Array(buffer.prefix(count))
}

/// A local client of the control socket, with plain blocking system calls: it sends a request
/// line and reads the reply line. A test that wants a stalled reader simply never reads.
final class ControlConnection: Sendable {
    let fd: CInt

    init(path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
        self.fd = fd
    }

    deinit { close(self.fd) }

    /// Sends `request` (a line without its newline) and returns the reply line.
    func request(_ request: String) async throws -> String {
        try writeAll(self.fd, Array("\(request)\n".utf8))
        let fd = self.fd
        return try await blocking {
            var line: [UInt8] = []
            while true {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 10_000) > 0 else { break }
                var byte: UInt8 = 0
                guard Glibc.read(fd, &byte, 1) == 1 else { break }
                if byte == UInt8(ascii: "\n") { break }
                line.append(byte)
            }
            return String(decoding: line, as: UTF8.self)
        }
    }

    func write(_ bytes: [UInt8]) throws { try writeAll(self.fd, bytes) }

    /// Reads until `count` bytes arrived (or `timeout` seconds passed without any).
    func read(count: Int, timeout: Double = 10) async throws -> [UInt8] {
        let fd = self.fd
        var bytes: [UInt8] = []
        while bytes.count < count {
            let more = try await blocking { try readAvailable(fd, timeout: timeout) }
            if more.isEmpty { break }
            bytes += more
        }
        return bytes
    }

    /// Everything until the bridge closes the connection.
    func readToEnd(timeout: Double = 10) async throws -> [UInt8] {
        let fd = self.fd
        var bytes: [UInt8] = []
        while true {
            let more = try await blocking { try readAvailable(fd, timeout: timeout) }
            if more.isEmpty { return bytes }
            bytes += more
        }
    }

    /// The bridge has closed its side (whether or not its last bytes were read).
    var peerClosed: Bool {
        let rdhup: Int16 = 0x2000  // POLLRDHUP (Linux; needs _GNU_SOURCE, so not imported)
        var poller = pollfd(fd: self.fd, events: rdhup, revents: 0)
        return poll(&poller, 1, 0) > 0 && poller.revents & (rdhup | Int16(POLLHUP)) != 0
    }

    /// The reply to `status`: its lines after `ok`.
    static func status(_ path: String) async throws -> [String] {
        let connection = try ControlConnection(path: path)
        guard try await connection.request("status") == "ok" else { return [] }
        let text = String(decoding: try await connection.readToEnd(), as: UTF8.self)
        return text.split(separator: "\n").map(String.init)
    }
}

/// Bytes received so far by a reader in another task, with a way to wait for a total.
final class ByteProgress: Sendable {
    private struct Waiter {
        let id: UInt64
        let count: Int
        let continuation: CheckedContinuation<Bool, Never>
        /// The timeout, cancelled when the bytes arrive first.
        var timer: Task<Void, Never>?
    }

    private let state = NIOLockedValueBox<(bytes: [UInt8], waiters: [Waiter], nextID: UInt64)>(([], [], 0))

    func append(_ more: [UInt8]) {
        let ready = self.state.withLockedValue { state -> [Waiter] in
            state.bytes += more
            let count = state.bytes.count
            let ready = state.waiters.filter { $0.count <= count }
            state.waiters.removeAll { $0.count <= count }
            return ready
        }
        for waiter in ready {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: true)
        }
    }

    /// Replaces what was received with `all` (for readers that report their whole history).
    func set(_ all: [UInt8]) {
        let more = self.state.withLockedValue { state -> [UInt8] in
            Array(all.dropFirst(state.bytes.count))
        }
        self.append(more)
    }

    var bytes: [UInt8] { self.state.withLockedValue { $0.bytes } }

    /// Returns true once at least `count` bytes have arrived, false if they have not within
    /// `timeout` (so that a stream that stopped receiving fails the test instead of hanging it).
    func wait(for count: Int, timeout: Duration = .seconds(60)) async -> Bool {
        await withCheckedContinuation { continuation in
            let id = self.state.withLockedValue { state -> UInt64? in
                if state.bytes.count >= count { return nil }
                state.nextID += 1
                state.waiters.append(Waiter(id: state.nextID, count: count, continuation: continuation))
                return state.nextID
            }
            guard let id else {
                continuation.resume(returning: true)
                return
            }
            let timer = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }  // cancelled: bytes came
                let expired = self.state.withLockedValue { state -> Waiter? in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiters.remove(at: index)
                }
                expired?.continuation.resume(returning: false)
            }
            let waiting = self.state.withLockedValue { state -> Bool in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return false }
                state.waiters[index].timer = timer
                return true
            }
            if !waiting { timer.cancel() }
        }
    }
}

/// Polls `condition` every few milliseconds until it holds, failing after `seconds`. For states
/// with no event to wait for (a device reopened by a timer in the bridge).
func eventually(_ what: String, within seconds: Double = 15, _ condition: () throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while try !condition() {
        guard Date() < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(20))
    }
}
