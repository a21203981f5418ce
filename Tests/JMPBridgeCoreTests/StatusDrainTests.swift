import Foundation
import GRPCCore
import JMPBridgeCore
import NIOCore
import Testing

/// The bridge holds the status of a stream that fails while its client may still be sending
/// (see RequestDrain, whose bounds RequestDrainTests check on a virtual clock): here, end to
/// end with a real client, that the status still arrives, and that the bridge says why it went
/// when it did (its debug line, not the client's clock, which measures the whole call on a
/// loaded machine).
@Suite("Status drain", .timeLimit(.minutes(2)))
struct StatusDrainTests {
    /// Runs a call on the route `gone` (no socket) whose producer writes `message` every
    /// `interval` (nil: without pause) until the call ends; returns its error code and the
    /// bridge's line about the held status.
    func failingCallStillSending(
        limits: Limits = Limits(),
        message: [UInt8],
        interval: Duration?
    ) async throws -> (RPCError.Code?, String) {
        let log = CapturedLog()
        return try await BridgeHarness.with(
            routes: ["gone": "gone"],
            defaultRoute: nil,
            limits: limits,
            logger: log.logger()
        ) { bridge in
            try await bridge.withClient { client in
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
                let line = log.all.first { $0.contains("status sent after draining the client") } ?? ""
                return (code, line)
            }
        }
    }

    /// The integer value of `key=` in a log line.
    func value(_ key: String, in line: String) -> Int? {
        guard let range = line.range(of: "\(key)=") else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    @Test("a client that pauses gets the status after 100 ms of quiet")
    func quiet() async throws {
        let (code, line) = try await failingCallStillSending(message: [1], interval: .seconds(30))
        #expect(code == .unavailable)
        #expect(line.contains("released-by=quiet"), "\(line)")
        #expect((value("held-ms", in: line) ?? 2000) < 2000, "\(line)")
    }
}
