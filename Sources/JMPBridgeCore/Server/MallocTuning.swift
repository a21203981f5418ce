import CJMPSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The glibc malloc settings `jmp-bridge` starts with.
///
/// Bulk transfers allocate and free buffers of a few hundred KiB at a high rate: NIOHTTP2's
/// frame decoder copies its accumulation buffer (copy-on-write) whenever a DATA frame of the
/// previous read is still queued in a stream whose target is full, and the gRPC deframer copies
/// each read's messages out once. With glibc's defaults a freed buffer that size goes back to the
/// kernel (it was mmapped, or the heap top above twice the mmap threshold is trimmed), so the next
/// one is faulted in and zeroed again: about 200,000 page faults per 2 s echo run at 1 GB/s.
/// Serving buffers below ``mmapThreshold`` from the heap and trimming only above
/// ``trimThreshold`` keeps that memory warm (a few thousand faults, 13–18 % less CPU per GiB,
/// bench/README.md). One arena (``arenaMax``) keeps all of it in the main heap, the one heap
/// whose free top `malloc_trim(3)` can return: ``HeapTrimmer`` does so while the bridge runs, so
/// the memory kept warm is given back once a transfer is over.
///
/// `GLIBC_TUNABLES` naming any of these settings leaves all three to the operator.
public enum MallocTuning {
    /// Allocations of at least this many bytes are mmapped (glibc's default starts at 128 KiB).
    public static let mmapThreshold = 4 << 20
    /// Free memory at the top of a heap beyond this many bytes is returned to the kernel at once.
    public static let trimThreshold = 32 << 20
    /// malloc arenas: one, the main heap.
    public static let arenaMax = 1

    /// What ``apply(tunables:)`` did.
    public enum Outcome: Hashable, Sendable {
        /// All settings were made.
        case applied
        /// `GLIBC_TUNABLES` sets one of them itself; nothing was changed.
        case leftToTunables
        /// `mallopt(3)` refused a setting.
        case refused
    }

    /// The settings applied once per process, from `GLIBC_TUNABLES` in the environment. Read it
    /// first thing in `main`, before any thread has made its own arena.
    public static let startup: Outcome = Self.apply(
        tunables: getenv("GLIBC_TUNABLES").map { String(cString: $0) }
    )

    /// Makes the settings unless `tunables`, the value of `GLIBC_TUNABLES`, names one of them.
    public static func apply(tunables: String?) -> Outcome {
        let names = ["mmap_threshold", "trim_threshold", "arena_max"]
        if let tunables, names.contains(where: { tunables.contains("glibc.malloc.\($0)") }) {
            return .leftToTunables
        }
        guard jmp_malloc_configure(Int32(Self.mmapThreshold), Int32(Self.trimThreshold), Int32(Self.arenaMax)) == 1
        else {
            return .refused
        }
        return .applied
    }

    /// One line for the start-up log.
    public static func describe(_ outcome: Outcome) -> String {
        switch outcome {
        case .applied:
            "malloc: one arena, buffers below \(Self.mmapThreshold >> 20) MiB from the heap, heap trimmed above "
                + "\(Self.trimThreshold >> 20) MiB free"
        case .leftToTunables:
            "malloc: settings left to GLIBC_TUNABLES"
        case .refused:
            "malloc: mallopt refused a setting; glibc's defaults apply"
        }
    }
}
