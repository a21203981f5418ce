import JMPTargets
import Logging
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A session's client that records what it is handed and acknowledges it at once, up to
/// `acknowledging` bytes in all (then it stalls, as a client that stopped reading).
private final class RecordingClient: ConsoleSessionClient {
    let received = ByteProgress()
    let cut = Box<String>()
    weak var session: ConsoleSession?
    var acknowledging: Int
    init(acknowledging: Int) {
        self.acknowledging = acknowledging
    }

    func consoleSessionOutput(_ bytes: ByteBuffer) {
        self.received.append(Array(bytes.readableBytesView))
        let count = min(bytes.readableBytes, self.acknowledging)
        self.acknowledging -= count
        if count > 0 { self.session?.acknowledge(count) }
    }

    func consoleSessionCut(_ reason: ConsoleUnavailable) {
        self.cut.set(reason.reason)
    }

    func consoleSessionInputWritabilityChanged(isWritable: Bool) {}
}

/// A recording client attached to a hub: what it received, why it was cut, and its session.
private struct Attached: Sendable {
    let received: ByteProgress
    let cut: Box<String>
    let handle: NIOLoopBound<(ConsoleSession, RecordingClient)>

    static func attach(to hub: ConsoleHub, on loop: any EventLoop, acknowledging: Int) async throws -> Attached {
        try await loop.flatSubmit { () -> EventLoopFuture<Attached> in
            let client = RecordingClient(acknowledging: acknowledging)
            let session = ConsoleSession(hub: hub, on: loop)
            client.session = session
            let attached = Attached(
                received: client.received,
                cut: client.cut,
                handle: NIOLoopBound((session, client), eventLoop: loop)
            )
            return session.attach(client).map { attached }
        }.get()
    }

    func start() async throws {
        let handle = self.handle
        try await handle.eventLoop.submit { handle.value.0.start() }.get()
    }
}

/// The attachment logic gRPC streams and control-socket clients share, on a real pty.
@Suite("Console session", .timeLimit(.minutes(1)))
struct ConsoleSessionTests {
    @Test("scrollback, then output printed before start, then live output; the scrollback is not counted as lag")
    func orderAndLag() async throws {
        let pty = try PseudoTerminal.open()
        defer { close(pty.slaveKeeper) }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let lagLimit = 8
        let hub = try await ConsoleHub.start(
            name: "test",
            master: pty.master,
            on: loop,
            scrollback: 1024,
            lagLimit: lagLimit,
            logger: Logger(label: "test")
        ).get()
        // A viewer that takes everything shows when the device's output has reached the hub.
        let viewer = try await Attached.attach(to: hub, on: loop, acknowledging: .max)
        try await viewer.start()
        try writeAll(pty.slaveKeeper, Array("scroll".utf8))
        #expect(await viewer.received.wait(for: 6))
        try writeAll(pty.slaveKeeper, Array("back".utf8))
        #expect(await viewer.received.wait(for: 10))

        // Attached but not started: the scrollback and what the device prints now wait.
        let late = try await Attached.attach(to: hub, on: loop, acknowledging: 15)
        try writeAll(pty.slaveKeeper, Array("early".utf8))
        #expect(await viewer.received.wait(for: 15))
        #expect(late.received.bytes.isEmpty)
        try await late.start()
        #expect(await late.received.wait(for: 15))
        #expect(String(decoding: late.received.bytes, as: UTF8.self) == "scrollbackearly")

        // The client took all 15 bytes, but the hub only counted the 5 of "early": it now lags by
        // nothing, and 9 more unacknowledged bytes pass the lag limit of 8. (Had the 10 bytes of
        // scrollback been acknowledged to the hub, it would allow 18.)
        try writeAll(pty.slaveKeeper, Array("123456789".utf8))
        let cut = try await withTimeout(10, "the cut") { await late.cut.get() }
        #expect(cut?.contains("fell more than \(lagLimit) bytes behind") == true, "\(cut ?? "no reason")")
        try await hub.close().get()
    }
}
