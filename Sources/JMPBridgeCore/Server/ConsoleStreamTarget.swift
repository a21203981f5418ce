import JMPTargets
import NIOCore

/// A stream attached to a console route, through a ``ConsoleSession``: it receives the scrollback
/// and then the live output, and its input goes to the device. Ending the client's input detaches
/// it; the console goes on.
final class ConsoleStreamTarget: StreamTarget, ConsoleSessionClient {
    private let session: ConsoleSession
    private weak var sink: (any StreamTargetDelegate)?
    /// Output handed to the stream while the client could not take more, acknowledged once it
    /// can: the hub cuts an attachment whose unacknowledged output grows too large.
    private var held = 0

    private init(session: ConsoleSession, sink: any StreamTargetDelegate) {
        self.session = session
        self.sink = sink
    }

    /// Attaches to `hub`; the target is usable once the future succeeds. The first
    /// ``resumeReading()`` (once the response has started) replays the scrollback.
    static func attach(
        to hub: ConsoleHub,
        sink: any StreamTargetDelegate,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<any StreamTarget> {
        let target = ConsoleStreamTarget(session: ConsoleSession(hub: hub, on: eventLoop), sink: sink)
        return target.session.attach(target).assumeIsolated().map { _ -> any StreamTarget in target }.nonisolated()
    }

    // MARK: - ConsoleSessionClient

    func consoleSessionOutput(_ bytes: ByteBuffer) {
        guard let sink = self.sink else { return }
        sink.targetRead(bytes)
        sink.targetReadComplete()
        if sink.targetMayRead {
            self.session.acknowledge(bytes.readableBytes)
        } else {
            self.held += bytes.readableBytes
        }
    }

    func consoleSessionCut(_ reason: ConsoleUnavailable) {
        self.sink?.targetClosed(error: reason)
    }

    func consoleSessionInputWritabilityChanged(isWritable: Bool) {
        self.sink?.targetWritabilityChanged(isWritable: isWritable)
    }

    // MARK: - StreamTarget

    func write(_ payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        let written = self.session.write(payload)
        if let promise { written.cascade(to: promise) }
    }

    func flush() {}

    func finishInput(after lastWrite: EventLoopFuture<Void>?) {
        // A client that will type no more is done with the console: detach and end the stream.
        self.close()
        self.sink?.targetReachedEOF()
    }

    func close() {
        self.session.detach()
    }

    func resumeReading() {
        self.session.start()
        if self.held > 0 {
            self.session.acknowledge(self.held)
            self.held = 0
        }
    }
}
