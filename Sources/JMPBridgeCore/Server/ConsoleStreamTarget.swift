import JMPTargets
import NIOCore

/// A stream attached to a console route: it receives the scrollback and then the live output,
/// and its input goes to the device. Ending the client's input detaches it; the console goes on.
final class ConsoleStreamTarget: StreamTarget, ConsoleAttachment {
    /// Input bytes on their way to the device above which the client is held back.
    private static let inputHighWatermark = 64 * 1024

    private let hub: ConsoleHub
    private let eventLoop: any EventLoop
    private weak var sink: (any TargetSink)?
    private var id: UInt64?
    private var waiting: [ByteBuffer] = []
    /// Output handed to the stream while the client could not take more, acknowledged to the
    /// hub once it can: the hub cuts an attachment whose unacknowledged output grows too large.
    private var held = 0
    private var inputInFlight = 0
    private var detached = false
    /// The response has started: output goes out as it comes (before, it waits in `waiting`).
    private var started = false

    private init(hub: ConsoleHub, eventLoop: any EventLoop, sink: any TargetSink) {
        self.hub = hub
        self.eventLoop = eventLoop
        self.sink = sink
    }

    /// Attaches to `hub`; the target is usable once the future succeeds. The first
    /// ``resumeReading()`` (once the response has started) replays the scrollback.
    static func attach(
        to hub: ConsoleHub,
        sink: any TargetSink,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<any StreamTarget> {
        let target = ConsoleStreamTarget(hub: hub, eventLoop: eventLoop, sink: sink)
        let subscriber = LoopHoppingSubscriber(target, on: eventLoop)
        return hub.attach(subscriber).hop(to: eventLoop).assumeIsolated().map { attachment -> any StreamTarget in
            target.id = attachment.id
            target.waiting.insert(attachment.scrollback, at: 0)
            return target
        }.nonisolated()
    }

    func output(_ bytes: ByteBuffer) {
        guard !self.detached else { return }
        if self.started {
            self.deliver(bytes)
        } else {
            self.waiting.append(bytes)
        }
    }

    private func deliver(_ bytes: ByteBuffer) {
        guard let sink = self.sink, let id = self.id else { return }
        sink.targetRead(bytes)
        sink.targetReadComplete()
        if sink.targetMayRead {
            self.hub.acknowledge(id, count: bytes.readableBytes)
        } else {
            self.held += bytes.readableBytes
        }
    }

    func cut(_ reason: ConsoleUnavailable) {
        guard !self.detached else { return }
        self.detached = true
        self.sink?.targetClosed(error: reason)
    }

    // MARK: - StreamTarget

    func write(_ payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        let count = payload.readableBytes
        let wasWritable = self.inputInFlight < Self.inputHighWatermark
        self.inputInFlight += count
        let written = self.hub.write(payload).hop(to: self.eventLoop)
        written.assumeIsolated().whenComplete { _ in
            let before = self.inputInFlight
            self.inputInFlight -= count
            if before >= Self.inputHighWatermark, self.inputInFlight < Self.inputHighWatermark {
                self.sink?.targetWritabilityChanged(isWritable: true)
            }
        }
        if let promise { written.cascade(to: promise) }
        if wasWritable, self.inputInFlight >= Self.inputHighWatermark {
            self.sink?.targetWritabilityChanged(isWritable: false)
        }
    }

    func flush() {}

    func finishInput(after lastWrite: EventLoopFuture<Void>?) {
        // A client that will type no more is done with the console: detach and end the stream.
        self.close()
        self.sink?.targetReachedEOF()
    }

    func close() {
        guard !self.detached else { return }
        self.detached = true
        if let id = self.id { self.hub.detach(id) }
    }

    func resumeReading() {
        if !self.started {
            self.started = true
            let waiting = self.waiting
            self.waiting = []
            for bytes in waiting where bytes.readableBytes > 0 { self.deliver(bytes) }
        }
        if self.held > 0, let id = self.id {
            self.hub.acknowledge(id, count: self.held)
            self.held = 0
        }
    }
}
