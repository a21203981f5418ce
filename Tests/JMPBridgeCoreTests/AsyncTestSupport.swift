import Foundation
import NIOConcurrencyHelpers

struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing with ``TimedOut`` if it takes longer than `seconds` (a safety net for a
/// broken bridge, never a synchronisation device).
func withTimeout<T: Sendable>(
    _ seconds: Double,
    _ what: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimedOut(what: what)
        }
        defer { group.cancelAll() }
        guard let result = try await group.next() else { throw TimedOut(what: what) }
        return result
    }
}

/// A one-shot event that tasks can wait for.
///
/// A waiting task that is cancelled (a suite's time limit, a ``withTimeout``) stops waiting, so a
/// test whose event never comes fails instead of hanging the whole test run.
final class Signal: Sendable {
    private struct State {
        var fired = false
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// Waiters cancelled before they were registered.
        var cancelled: Set<Int> = []
    }

    private let state = NIOLockedValueBox(State())

    func fire() {
        let waiters = self.state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            guard !state.fired else { return [] }
            state.fired = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    var isFired: Bool { self.state.withLockedValue { $0.fired } }

    /// Returns once the signal has fired, or once the waiting task is cancelled.
    func wait() async {
        let id = self.state.withLockedValue { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = self.state.withLockedValue { state -> Bool in
                    if state.fired || state.cancelled.remove(id) != nil { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                if !state.fired { state.cancelled.insert(id) }
                return nil
            }
            waiter?.resume()
        }
    }
}

/// A value set once by one task and awaited by another.
final class Box<Value: Sendable>: Sendable {
    private let value = NIOLockedValueBox<Value?>(nil)
    private let signal = Signal()

    func set(_ newValue: Value) {
        self.value.withLockedValue { $0 = newValue }
        self.signal.fire()
    }

    var isSet: Bool { self.signal.isFired }

    func get() async -> Value? {
        await self.signal.wait()
        return self.value.withLockedValue { $0 }
    }
}

/// Deterministic pseudo-random bytes (SplitMix64), so failures can be reproduced.
func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var bytes = [UInt8]()
    bytes.reserveCapacity(count)
    while bytes.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        withUnsafeBytes(of: z.littleEndian) { bytes.append(contentsOf: $0.prefix(count - bytes.count)) }
    }
    return bytes
}

/// A counter shared between tasks.
final class Counter: Sendable {
    private let count = NIOLockedValueBox(0)
    func add(_ amount: Int) { self.count.withLockedValue { $0 += amount } }
    var value: Int { self.count.withLockedValue { $0 } }
}
