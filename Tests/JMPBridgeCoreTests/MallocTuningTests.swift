import CJMPSystem
import Foundation
import Logging
import Testing

@testable import JMPBridgeCore

/// The malloc settings `jmp-bridge` starts with: transfer-sized buffers come from the heap and
/// stay there when freed, the heap trimmer gives them back, and an operator's GLIBC_TUNABLES wins.
@Suite("Malloc tuning", .serialized)
struct MallocTuningTests {
    /// Allocates, fills and frees `size` bytes, reporting whether glibc mmapped the chunk and
    /// whether its pages were still resident after `free` (kept for the next allocation).
    /// Both are read off this one chunk, so other tests' allocations cannot change them.
    private func churn(_ size: Int) throws -> (mmapped: Bool, keptResident: Bool) {
        let chunk = try #require(malloc(size))
        // Touch every page, as a buffer being filled would.
        memset(chunk, 0x5a, size)
        let mapped = jmp_malloc_chunk_is_mmapped(chunk) == 1
        free(chunk)
        // An unmapped chunk has no pages at all (mincore fails with ENOMEM).
        let resident = mapped ? 0 : try self.residentBytes(at: chunk, size: size)
        return (mapped, resident >= size - 2 * Int(sysconf(Int32(_SC_PAGESIZE))))
    }

    /// How many bytes of the whole pages inside `size` bytes at `address` are resident
    /// (mincore(2)); another test's memory use does not change it.
    private func residentBytes(at address: UnsafeMutableRawPointer, size: Int) throws -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: address) + page - 1) / page * page
        let end = (Int(bitPattern: address) + size) / page * page
        guard end > start, let base = UnsafeMutableRawPointer(bitPattern: start) else { return 0 }
        var vector = [UInt8](repeating: 0, count: (end - start) / page)
        try #require(mincore(base, end - start, &vector) == 0)
        return vector.filter { $0 & 1 != 0 }.count * page
    }

    @Test("applied: a 2 MiB buffer comes from the heap and is kept when freed; glibc's default maps it")
    func appliedKeepsBuffersOnTheHeap() throws {
        let size = 2 << 20
        // Control: glibc's initial settings (128 KiB mmap threshold) map such a buffer.
        #expect(jmp_malloc_configure(128 * 1024, 256 * 1024, 0) == 1)
        #expect(try self.churn(size).mmapped)

        #expect(MallocTuning.apply(tunables: nil) == .applied)
        let tuned = try self.churn(size)
        #expect(!tuned.mmapped)
        #expect(tuned.keptResident)
        // Still mapped above the threshold, so one huge message cannot pin heap memory.
        #expect(try self.churn(MallocTuning.mmapThreshold + (1 << 20)).mmapped)
    }

    @Test("the heap trimmer gives kept buffers back to the kernel")
    func trimmerReleasesFreeHeap() throws {
        #expect(MallocTuning.apply(tunables: nil) == .applied)
        let trimmer = HeapTrimmer(interval: .seconds(10), logger: Logger(label: "test"))

        // 36 MiB of 3 MiB buffers, filled and freed; a 13th, still in use after them, keeps
        // them from merging into the top of the heap, as live allocations do in a running bridge.
        let size = 3 << 20
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<13 {
            let buffer = try #require(malloc(size))
            memset(buffer, 0x5a, size)
            buffers.append(buffer)
        }
        let inUse = buffers.removeLast()
        defer { free(inUse) }
        for buffer in buffers { free(buffer) }
        let kept = try buffers.reduce(0) { $0 + (try self.residentBytes(at: $1, size: size)) }
        #expect(kept >= 33 << 20, "freed buffers stay resident until trimmed")

        let found = try #require(trimmer.trimIfWorthIt())
        #expect(found >= 30 << 20)
        let left = try buffers.reduce(0) { $0 + (try self.residentBytes(at: $1, size: size)) }
        #expect(kept - left >= 24 << 20, "trimming released only \((kept - left) >> 20) MiB")
    }

    @Test("GLIBC_TUNABLES naming a malloc setting is left alone; other tunables are not")
    func operatorTunablesWin() {
        #expect(MallocTuning.apply(tunables: "glibc.malloc.trim_threshold=1048576") == .leftToTunables)
        #expect(
            MallocTuning.apply(tunables: "glibc.pthread.rseq=0:glibc.malloc.mmap_threshold=65536") == .leftToTunables
        )
        #expect(MallocTuning.apply(tunables: "glibc.malloc.arena_max=4") == .leftToTunables)
        #expect(MallocTuning.apply(tunables: "glibc.pthread.rseq=0") == .applied)
        #expect(MallocTuning.describe(.leftToTunables).contains("GLIBC_TUNABLES"))
    }
}
