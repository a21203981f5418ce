import NIOCore

/// One client attached to a ``ConsoleHub`` (a gRPC stream or a control-socket connection), on the
/// client's event loop: what both kinds of attachment share.
///
/// Output: the scrollback and any output printed before the client is ready wait until
/// ``start()``, then go to the client in order, and live output follows as it comes. The client
/// acknowledges output once it has taken it, and the session tells the hub, which cuts an
/// attachment whose unacknowledged output grows beyond the console's lag limit. The hub never
/// counted the scrollback, so the first acknowledged bytes, as many as the scrollback had, are not
/// passed on.
///
/// Input: ``write(_:)`` hands the client's bytes to the device; while more than
/// ``inputHighWatermark`` bytes are on their way the client is told to hold back.
public final class ConsoleSession: ConsoleAttachment {
    /// Input bytes on their way to the device above which the client is held back.
    public static let inputHighWatermark = 64 * 1024

    /// The console attached to.
    public let hub: ConsoleHub
    private let eventLoop: any EventLoop
    private weak var client: (any ConsoleSessionClient)?
    private var id: UInt64?
    /// The scrollback and early output, until ``start()``.
    private var waiting: [ByteBuffer] = []
    /// Scrollback bytes still to be acknowledged by the client (the hub never counted them).
    private var uncounted = 0
    private var started = false
    private var ended = false
    private var inputInFlight = 0

    /// Creates a session on `hub` for a client living on `eventLoop`; ``attach(_:)`` attaches it.
    public init(hub: ConsoleHub, on eventLoop: any EventLoop) {
        self.hub = hub
        self.eventLoop = eventLoop
    }

    /// Attaches `client` to the hub. The future (on the session's loop) fails with
    /// ``ConsoleUnavailable`` when the console is down. Output arriving before ``start()`` waits.
    public func attach(_ client: any ConsoleSessionClient) -> EventLoopFuture<Void> {
        self.client = client
        let subscriber = LoopHoppingSubscriber(self, on: self.eventLoop)
        return self.hub.attach(subscriber).hop(to: self.eventLoop).assumeIsolated().map { attachment in
            self.id = attachment.id
            self.uncounted = attachment.scrollback.readableBytes
            self.waiting.insert(attachment.scrollback, at: 0)
            if self.ended { self.hub.detach(attachment.id) }  // detached while attaching
        }.nonisolated()
    }

    /// The client is ready for output: the scrollback and what waited go out now, live output as
    /// it comes. Idempotent.
    public func start() {
        guard !self.started else { return }
        self.started = true
        let waiting = self.waiting
        self.waiting = []
        for bytes in waiting { self.deliver(bytes) }
    }

    /// The client has taken `count` more bytes of the output handed to it.
    public func acknowledge(_ count: Int) {
        let uncounted = min(count, self.uncounted)
        self.uncounted -= uncounted
        guard count > uncounted, let id = self.id, !self.ended else { return }
        self.hub.acknowledge(id, count: count - uncounted)
    }

    /// True while the client may send more input.
    public var isInputWritable: Bool { self.inputInFlight < Self.inputHighWatermark }

    /// Writes the client's input to the device; the future (on the session's loop) completes when
    /// the device has taken it.
    public func write(_ bytes: ByteBuffer) -> EventLoopFuture<Void> {
        let count = bytes.readableBytes
        let wasWritable = self.isInputWritable
        self.inputInFlight += count
        let written = self.hub.write(bytes).hop(to: self.eventLoop)
        written.assumeIsolated().whenComplete { _ in
            let wasWritable = self.isInputWritable
            self.inputInFlight -= count
            if !wasWritable, self.isInputWritable {
                self.client?.consoleSessionInputWritabilityChanged(isWritable: true)
            }
        }
        if wasWritable, !self.isInputWritable {
            self.client?.consoleSessionInputWritabilityChanged(isWritable: false)
        }
        return written
    }

    /// Detaches from the hub; no more output or cut reaches the client. Idempotent.
    public func detach() {
        guard !self.ended else { return }
        self.ended = true
        if let id = self.id { self.hub.detach(id) }
    }

    private func deliver(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0, let client = self.client else { return }
        client.consoleSessionOutput(bytes)
    }

    // MARK: - ConsoleAttachment

    public func output(_ bytes: ByteBuffer) {
        guard !self.ended else { return }
        if self.started {
            self.deliver(bytes)
        } else {
            self.waiting.append(bytes)
        }
    }

    public func cut(_ reason: ConsoleUnavailable) {
        guard !self.ended else { return }
        self.ended = true
        self.client?.consoleSessionCut(reason)
    }
}
