import JMPTargets
import NIOCore
import Testing

/// A ``StreamTarget`` that records what the stream handler does to it. Writes complete only when
/// the test completes their promises.
final class FakeStreamTarget: StreamTarget {
    /// Payloads written, in order.
    private(set) var writes: [String] = []
    /// The write promises, in order, for the test to complete.
    private(set) var promises: [EventLoopPromise<Void>] = []
    private(set) var flushes = 0
    /// `finishInput(after:)` calls, with whether the last write was passed along.
    private(set) var inputFinished: [Bool] = []
    private(set) var closed = false
    private(set) var resumedReads = 0

    /// Completes write number `index` (from 0), as the target's socket would.
    func completeWrite(_ index: Int, with result: Result<Void, any Error> = .success(())) {
        guard index < self.promises.count else {
            Issue.record("write \(index) was never issued (\(self.promises.count) were)")
            return
        }
        self.promises[index].completeWith(result)
    }

    func write(_ payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        self.writes.append(String(buffer: payload))
        if let promise { self.promises.append(promise) }
    }

    func flush() { self.flushes += 1 }

    func finishInput(after lastWrite: EventLoopFuture<Void>?) { self.inputFinished.append(lastWrite != nil) }

    func close() { self.closed = true }

    func resumeReading() { self.resumedReads += 1 }
}
