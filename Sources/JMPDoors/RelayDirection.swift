import CJMPSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One direction of a relay: bytes from `source` to `destination`, through a pipe with
/// `splice(2)` (no copy into user space) or, where the kernel refuses splice for these
/// descriptors or it is switched off, through a buffer with read/write.
///
/// Only the relay loop's thread touches it. Memory is bounded by the pipe's capacity or the
/// buffer's size: nothing is read from the source while the destination has not taken what was
/// read before, so a slow reader pushes back on its writer.
final class RelayDirection {
    let source: CInt
    let destination: CInt
    /// Bytes delivered to the destination.
    private(set) var moved = 0
    /// Whether the source's EOF has been passed on (`shutdown(SHUT_WR)` of the destination).
    private(set) var isFinished = false
    /// Whether this direction moved its bytes with splice (false once it fell back).
    var usesSplice: Bool { self.pipe != nil }

    private var pipe: (read: CInt, write: CInt)?
    private var pipeCapacity = 0
    private var buffer: UnsafeMutableRawBufferPointer?
    private var offset = 0
    private var buffered = 0
    private var sawEOF = false

    /// What went wrong in a direction: the call and its errno.
    struct Failure: Error, CustomStringConvertible {
        let operation: String
        let code: CInt
        var description: String { "\(self.operation): \(String(cString: strerror(self.code)))" }
    }

    init(from source: CInt, to destination: CInt, splice: Bool, capacity: Int) {
        self.source = source
        self.destination = destination
        if splice {
            var ends: [CInt] = [-1, -1]
            let granted = jmp_pipe(&ends, CInt(capacity))
            if granted > 0 {
                self.pipe = (ends[0], ends[1])
                self.pipeCapacity = Int(granted)
                return
            }
        }
        self.buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        if let pipe {
            close(pipe.read)
            close(pipe.write)
        }
        self.buffer?.deallocate()
    }

    /// Moves bytes until the source has nothing more for now or the destination takes no more;
    /// passes EOF on once everything read has been delivered. Throws on a failure of either
    /// side (the relay is then torn down).
    func pump() throws(Failure) {
        while !self.isFinished {
            if self.buffered == 0 {
                if self.sawEOF {
                    // Half-close: the other direction goes on until it ends too.
                    shutdown(self.destination, CInt(SHUT_WR))
                    self.isFinished = true
                    return
                }
                let count = self.fill()
                if count > 0 {
                    self.buffered = count
                    self.offset = 0
                } else if count == 0 {
                    self.sawEOF = true
                } else if errno == EAGAIN {
                    return
                } else if errno == EINVAL, self.pipe != nil {
                    self.fallBackToCopying(pending: 0)
                } else {
                    throw Failure(operation: "reading", code: errno)
                }
                continue
            }
            let count = self.drain()
            if count > 0 {
                self.buffered -= count
                self.offset += count
                self.moved += count
            } else if count < 0 && errno == EAGAIN {
                return
            } else if count < 0 && errno == EINVAL, self.pipe != nil {
                self.fallBackToCopying(pending: self.buffered)
            } else {
                throw Failure(operation: "writing", code: count < 0 ? errno : EPIPE)
            }
        }
    }

    private func fill() -> Int {
        if let pipe {
            return jmp_splice(self.source, pipe.write, self.pipeCapacity)
        }
        guard let buffer else { return -1 }
        return read(self.source, buffer.baseAddress, buffer.count)
    }

    private func drain() -> Int {
        if let pipe {
            return jmp_splice(pipe.read, self.destination, self.buffered)
        }
        guard let buffer, let base = buffer.baseAddress else { return -1 }
        return write(self.destination, base + self.offset, self.buffered)
    }

    /// The kernel refused splice for these descriptors: continue with a buffer, taking over
    /// what the pipe still holds.
    private func fallBackToCopying(pending: Int) {
        guard let pipe else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: max(self.pipeCapacity, 64 * 1024),
            alignment: 16
        )
        var taken = 0
        while taken < pending {
            let count = read(pipe.read, buffer.baseAddress.map { $0 + taken }, pending - taken)
            if count <= 0 { break }
            taken += count
        }
        close(pipe.read)
        close(pipe.write)
        self.pipe = nil
        self.buffer = buffer
        self.offset = 0
        self.buffered = taken
    }
}
