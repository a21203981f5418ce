import CJMPSystem
import Foundation
import Logging
import Testing

@testable import JMPBridgeCore

/// The malloc settings `jmp-bridge` starts with: transfer-sized buffers come from the heap and
/// stay there when freed, the heap trimmer gives them back, and an operator's GLIBC_TUNABLES wins.
@Suite("Malloc tuning", .serialized)
struct MallocTuningTests {
    /// Allocates and frees `size` bytes, reporting whether the chunk was mmapped and how many
    /// bytes of heap were returned to the kernel when it was freed.
    private func churn(_ size: Int) throws -> (mmapped: Bool, trimmed: Int) {
        let before = jmp_malloc_mapped_bytes()
        let chunk = try #require(malloc(size))
        // Touch every page, as a buffer being filled would.
        memset(chunk, 0x5a, size)
        let wasMapped = jmp_malloc_mapped_bytes() - before >= size
        let heapBefore = jmp_malloc_heap_bytes()
        free(chunk)
        return (wasMapped, heapBefore - min(heapBefore, jmp_malloc_heap_bytes()))
    }

    /// This process's resident set, from /proc/self/statm.
    private func residentBytes() throws -> Int {
        let statm = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
        let pages = try #require(statm.count > 1 ? Int(statm[1]) : nil)
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
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
        #expect(tuned.trimmed == 0)
        // Still mapped above the threshold, so one huge message cannot pin heap memory.
        #expect(try self.churn(MallocTuning.mmapThreshold + (1 << 20)).mmapped)
    }

    @Test("the heap trimmer gives kept buffers back to the kernel, and leaves a small heap alone")
    func trimmerReleasesFreeHeap() throws {
        #expect(MallocTuning.apply(tunables: nil) == .applied)
        let trimmer = HeapTrimmer(interval: .seconds(10), logger: Logger(label: "test"))
        _ = trimmer.trimIfWorthIt()
        #expect(jmp_malloc_free_bytes() < HeapTrimmer.minimumFreeBytes)
        #expect(trimmer.trimIfWorthIt() == nil)

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
        let kept = try self.residentBytes()
        #expect(jmp_malloc_free_bytes() >= 30 << 20)

        let found = try #require(trimmer.trimIfWorthIt())
        #expect(found >= 30 << 20)
        let released = kept - min(kept, try self.residentBytes())
        #expect(released >= 24 << 20, "resident set fell by only \(released >> 20) MiB")
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
