import Foundation
import GRPCCore
import JMPBridgeCore
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A `unix:` target whose listen backlog is full answers `connect` with `EAGAIN`: the stream
/// waits for it (retrying) instead of failing, up to the route's `connect-timeout`.
@Suite("Busy targets", .timeLimit(.minutes(2)))
struct BusyTargetTests {
    @Test("a target whose backlog is full is retried until it accepts, and the stream keeps every byte")
    func retriedUntilAccepting() async throws {
        let log = CapturedLog()
        try await BridgeHarness.with(routes: ["busy": "busy"], defaultRoute: "busy", logger: log.logger()) { bridge in
            let listener = try BacklogListener(path: bridge.targetPath("busy"))
            let fillers = try BacklogListener.fillBacklog(of: bridge.targetPath("busy"))
            defer { for fd in fillers { close(fd) } }
            #expect(!fillers.isEmpty)
            let sent = pseudoRandomBytes(count: 300_000, seed: 11)

            try await bridge.withClient { client in
                let call = Task {
                    try await Router.call(client) { writer in
                        for chunk in sent.chunks(ofCount: 30_000) { try await writer.write(Router.data(Array(chunk))) }
                    }
                }
                defer { call.cancel() }
                // The bridge has met the full backlog at least once...
                try await withTimeout(20, "the bridge to retry a busy target") {
                    await log.waitForLine(containing: "target busy (listen backlog full), retrying")
                }
                // ...and is still waiting: the stream has not failed.
                #expect(!log.all.contains { $0.contains("stream failed") })
                // Now the target accepts: the queued connections first, then the bridge's.
                let fillerCount = fillers.count
                let served = Signal()
                let thread = Thread {
                    defer { served.fire() }
                    for _ in 0..<fillerCount {
                        guard let fd = try? listener.accept() else { return }
                        close(fd)
                    }
                    guard let fd = try? listener.accept() else { return }
                    BacklogListener.echo(fd)
                }
                thread.start()
                let result = try await withTimeout(30, "the stream through the once-busy target") {
                    try await call.value
                }
                await served.wait()
                #expect(result.bytes == sent, "the stream lost bytes")
                #expect(result.goaway)
            }
            #expect(log.all.contains { $0.contains("connected to a busy target") })
        }
    }

    @Test("a stream cancelled while its target is busy stops the retries at once")
    func cancelledWhileBusy() async throws {
        let log = CapturedLog()
        try await BridgeHarness.with(routes: ["busy": "busy"], defaultRoute: "busy", logger: log.logger()) { bridge in
            let listener = try BacklogListener(path: bridge.targetPath("busy"))
            let fillers = try BacklogListener.fillBacklog(of: bridge.targetPath("busy"))
            defer {
                for fd in fillers { close(fd) }
                _ = listener
            }
            try await bridge.withClient { client in
                let call = Task {
                    try await Router.call(client) { writer in try await writer.write(Router.data([1, 2, 3])) }
                }
                try await withTimeout(20, "the bridge to retry a busy target") {
                    await log.waitForLine(containing: "target busy (listen backlog full), retrying")
                }
                call.cancel()
                _ = await call.result
                // Well within the 10 s connect-timeout: the next retry sees the stream gone.
                try await withTimeout(5, "the retries to stop") {
                    await log.waitForLine(containing: "stopped waiting for a busy target: the stream is gone")
                }
            }
        }
    }

    @Test("a target that stays busy for the route's connect-timeout fails the stream with UNAVAILABLE, saying so")
    func busyUntilTimeout() async throws {
        try await BridgeHarness.with(
            routes: ["busy": "busy"],
            defaultRoute: "busy",
            configure: { configuration, _ in configuration.routes["busy"]?.connectTimeout = .milliseconds(300) }
        ) { bridge in
            let listener = try BacklogListener(path: bridge.targetPath("busy"))
            let fillers = try BacklogListener.fillBacklog(of: bridge.targetPath("busy"))
            defer {
                for fd in fillers { close(fd) }
                _ = listener
            }
            try await bridge.withClient { client in
                let started = ContinuousClock.now
                do {
                    _ = try await withTimeout(20, "the busy stream to fail") {
                        try await Router.call(client) { writer in try await writer.write(Router.data([1, 2, 3])) }
                    }
                    Issue.record("the stream to a target that stayed busy succeeded")
                } catch let error as RPCError {
                    #expect(error.code == .unavailable)
                    #expect(error.message.contains("route 'busy'"), "\(error.message)")
                    #expect(error.message.contains("listen backlog stayed full"), "\(error.message)")
                }
                #expect(ContinuousClock.now - started >= .milliseconds(300))
            }
        }
    }
}
