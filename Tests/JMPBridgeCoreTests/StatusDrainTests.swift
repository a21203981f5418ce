import Foundation
import GRPCCore
import JMPBridgeCore
import NIOCore
import Testing

/// A stream that fails while its client is still sending holds its status back while the client
/// writes (see RequestDrain), but never longer than the drain's bounds: 2 s, and the stream
/// window plus the largest message in discarded bytes.
@Suite("Status drain", .timeLimit(.minutes(2)))
struct StatusDrainTests {
    /// Runs a call on the route `gone` (no socket) whose producer writes `message` every
    /// `interval` until the call ends; returns its error code and how long it took.
    func failingCallStillSending(
        _ bridge: BridgeHarness,
        message: [UInt8],
        interval: Duration?
    ) async throws -> (RPCError.Code?, Duration) {
        try await bridge.withClient { client in
            let started = ContinuousClock.now
            var code: RPCError.Code?
            do {
                _ = try await withTimeout(20, "the failing stream to end") {
                    try await Router.call(client, metadata: ["jmp-route": "gone"]) { writer in
                        while true {
                            try await writer.write(Router.data(message))
                            if let interval { try await Task.sleep(for: interval) }
                        }
                    }
                }
            } catch let error as RPCError {
                code = error.code
            }
            return (code, ContinuousClock.now - started)
        }
    }

    @Test("a client that keeps writing slowly gets the status once the drain's time is up")
    func timeBound() async throws {
        try await BridgeHarness.with(routes: ["gone": "gone"], defaultRoute: nil) { bridge in
            // One small message every 20 ms: never quiet for 100 ms, far from the byte bound.
            let (code, elapsed) = try await failingCallStillSending(
                bridge,
                message: [1, 2, 3],
                interval: .milliseconds(20)
            )
            #expect(code == .unavailable)
            #expect(elapsed >= .milliseconds(1900), "the status was not held while the client wrote")
            #expect(elapsed < .seconds(6), "the status was held for \(elapsed)")
        }
    }

    @Test("a client that writes fast gets the status once the drain's byte bound is passed")
    func byteBound() async throws {
        var limits = Limits()
        limits.streamWindow = 65535
        limits.maxMessageSize = 1024
        try await BridgeHarness.with(routes: ["gone": "gone"], defaultRoute: nil, limits: limits) { bridge in
            // 66 KiB may be discarded: 66 messages of 1000 bytes, written without pause.
            let (code, elapsed) = try await failingCallStillSending(
                bridge,
                message: [UInt8](repeating: 7, count: 1000),
                interval: nil
            )
            #expect(code == .unavailable)
            #expect(elapsed < .milliseconds(1500), "the byte bound did not end the wait (\(elapsed))")
        }
    }

    @Test("a client that pauses gets the status after 100 ms of quiet")
    func quiet() async throws {
        try await BridgeHarness.with(routes: ["gone": "gone"], defaultRoute: nil) { bridge in
            let (code, elapsed) = try await failingCallStillSending(bridge, message: [1], interval: .seconds(30))
            #expect(code == .unavailable)
            #expect(elapsed >= .milliseconds(100))
            #expect(elapsed < .seconds(1), "a quiet client waited \(elapsed) for its status")
        }
    }
}
