import CJMPSystem
import Logging

/// Gives free heap memory back to the kernel while the bridge runs.
///
/// ``MallocTuning`` keeps freed transfer buffers in the heap, where the next transfer finds them
/// already faulted in; glibc then returns memory only beyond 32 MiB of free heap. So that a
/// finished flash does not leave tens of MiB resident for months, every ``interval`` the trimmer
/// calls `malloc_trim(0)` once at least ``minimumFreeBytes`` of the heap are free: that releases
/// the top of the main heap (with ``MallocTuning``, the only one) and the free pages inside every
/// arena. During a transfer this costs
/// one round of page faults per interval; idle, the resident size falls back within one interval.
struct HeapTrimmer: Sendable {
    /// Below this much free heap, trimming is not worth the arenas' locks.
    static let minimumFreeBytes = 4 << 20

    let interval: Duration
    let logger: Logger

    /// Trims every ``interval`` until cancelled.
    func run() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: self.interval) } catch { return }
            self.trimIfWorthIt()
        }
    }

    /// Trims if at least ``minimumFreeBytes`` of heap are free; returns the free bytes it found
    /// then, or nil if it left the heap alone.
    @discardableResult
    func trimIfWorthIt() -> Int? {
        let free = jmp_malloc_free_bytes()
        guard free >= Self.minimumFreeBytes else { return nil }
        let released = jmp_malloc_trim() == 1
        self.logger.debug(
            "heap trimmed",
            metadata: ["free-bytes": "\(free)", "released": "\(released)"]
        )
        return free
    }
}
