import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import JMPBridgeCore
import NIOCore
import Testing

/// The stream limits: each refusal is RESOURCE_EXHAUSTED (the idle timeout DEADLINE_EXCEEDED),
/// logged, and leaves a healthy neighbour stream intact.
@Suite("Limits", .serialized, .timeLimit(.minutes(2)))
struct BridgeLimitTests {
    /// Waits until the bridge counts `count` open streams.
    private func waitForOpenStreams(_ bridge: BridgeHarness, _ count: Int, atMost: Bool = false) async throws {
        try await eventually("\(count) open streams", within: 10) {
            let open = bridge.server.statistics.activeStreams.load(ordering: .relaxed)
            return atMost ? open <= count : open >= count
        }
    }

    /// Runs `body` while one stream on its own connection is parked on `route`.
    private func withParkedStream<T: Sendable>(
        _ bridge: BridgeHarness,
        route: String,
        _ body: () async throws -> T
    ) async throws -> T {
        let release = Signal()
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await bridge.withClient { client in
                    _ = try? await Router.call(client, metadata: ["jmp-route": "\(route)"]) { _ in await release.wait()
                    }
                }
            }
            try await self.waitForOpenStreams(bridge, 1)
            let result = try await body()
            release.fire()
            try await group.waitForAll()
            return result
        }
    }

    @Test("streams over max-streams (in total, across connections) are RESOURCE_EXHAUSTED")
    func maxStreams() async throws {
        var limits = Limits()
        limits.maxStreams = 2
        let log = CapturedLog()
        try await BridgeHarness.with(routes: ["echo": "echo", "quiet": "quiet"], limits: limits, logger: log.logger()) {
            bridge in
            try await TargetServer.run(at: bridge.targetPath("quiet"), handler: TargetServer.sink) {
                try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                    try await withParkedStream(bridge, route: "quiet") {
                        let (code, message) = try await BridgeFailureTests().statusWithHealthyNeighbour(bridge) {
                            _,
                            ended in await ended.wait()
                        }
                        #expect(code == .resourceExhausted)
                        #expect(message.contains("max-streams"))
                    }
                }
            }
        }
        #expect(log.all.contains { $0.contains("RESOURCE_EXHAUSTED") && $0.contains("max-streams") })
    }

    @Test("a stream over max-streams-per-connection is RESOURCE_EXHAUSTED; other connections are not limited")
    func maxStreamsPerConnection() async throws {
        var limits = Limits()
        limits.maxStreamsPerConnection = 1
        try await BridgeHarness.with(limits: limits) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                // The neighbour is the connection's one stream; the failing call is its second.
                let (code, message) = try await BridgeFailureTests().statusWithHealthyNeighbour(bridge) { _, ended in
                    await ended.wait()
                }
                #expect(code == .resourceExhausted)
                #expect(message.contains("max-streams-per-connection"))
            }
        }
    }

    @Test("an attachment over a console's max-attachments is RESOURCE_EXHAUSTED")
    func maxAttachments() async throws {
        var pty = PtyConfiguration(link: "/nonexistent")
        pty.maxAttachments = 1
        try await BridgeHarness.with(
            targets: [
                "console": { directory in
                    var console = pty
                    console.link = "\(directory)/console"
                    return .pty(console)
                }
            ]
        ) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                try await withParkedStream(bridge, route: "console") {
                    let (code, message) = try await BridgeFailureTests().statusWithHealthyNeighbour(
                        bridge,
                        metadata: ["jmp-route": "console"]
                    ) { _, ended in await ended.wait() }
                    #expect(code == .resourceExhausted)
                    #expect(message.contains("max-attachments"))
                }
                // Once the first attachment is gone, a new one is admitted.
                try await self.waitForOpenStreams(bridge, 0, atMost: true)
                try await withParkedStream(bridge, route: "console") {}
            }
        }
    }

    @Test("a stream that moves no byte for idle-timeout ends with DEADLINE_EXCEEDED; a busy neighbour goes on")
    func idleTimeout() async throws {
        var limits = Limits()
        limits.idleTimeout = .milliseconds(500)
        try await BridgeHarness.with(routes: ["echo": "echo", "quiet": "quiet"], limits: limits) { bridge in
            try await TargetServer.run(at: bridge.targetPath("quiet"), handler: TargetServer.sink) {
                try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                    try await bridge.withClient { client in
                        let idleEnded = Signal()
                        async let busy = Router.call(client) { writer in
                            // A byte every 100 ms until the idle stream has been cut, then a bit more.
                            var sent = 0
                            while !idleEnded.isFired || sent < 25 {
                                try await writer.write(Router.data([UInt8(sent % 256)]))
                                sent += 1
                                try await Task.sleep(for: .milliseconds(100))
                            }
                        }
                        let started = ContinuousClock.now
                        var code: RPCError.Code?
                        do {
                            _ = try await Router.call(client, metadata: ["jmp-route": "quiet"]) { _ in
                                try await Task.sleep(for: .seconds(30))
                            }
                        } catch let error as RPCError {
                            code = error.code
                        }
                        idleEnded.fire()
                        #expect(code == .deadlineExceeded)
                        // Cut after the idle time, not before, and not long after: the timer
                        // fires at 500 ms; a loaded test machine gets a few seconds of slack.
                        let elapsed = ContinuousClock.now - started
                        #expect(elapsed >= .milliseconds(450), "cut after \(elapsed)")
                        #expect(elapsed < .seconds(5), "cut only after \(elapsed)")
                        let received = try await busy
                        #expect(received.bytes.count >= 25)
                        #expect(received.goaway)
                    }
                }
            }
        }
    }
}
