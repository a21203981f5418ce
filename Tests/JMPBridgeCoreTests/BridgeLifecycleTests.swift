import Foundation
import Logging
import NIOCore
import Testing

@testable import JMPBridgeCore

/// The server's life cycle: every way of stopping ends the one drain, and whoever asked for a
/// stop returns once it has ended.
@Suite("Life cycle", .timeLimit(.minutes(2)))
struct BridgeLifecycleTests {
    /// A bridge on a private Unix listener that nobody connects to.
    private func makeServer(in directory: String) -> BridgeServer {
        var configuration = BridgeConfiguration(
            listeners: [ListenerConfiguration(address: .unix(path: "\(directory)/grpc.sock"))]
        )
        configuration.routes["echo"] = RouteConfiguration(name: "echo", target: .unix(path: "\(directory)/echo.sock"))
        // The failure test logs at critical level on purpose: keep the test output quiet.
        let logger = Logger(label: "jmp-bridge-test", factory: { _ in SwiftLogNoOpLogHandler() })
        return BridgeServer(configuration: configuration, graceTime: .seconds(1), logger: logger)
    }

    /// Runs `server` in a task and returns it once the server reports itself ready.
    private func running(_ server: BridgeServer) async throws -> Task<Void, any Error> {
        let task = Task { try await server.run() }
        try await eventually("the bridge to be ready", within: 10) {
            server.environment.state.withLockedValue { $0 } == .ready
        }
        return task
    }

    @Test("shutdown() while a drain is already running waits for that drain instead of hanging")
    func shutdownDuringDrain() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = self.makeServer(in: directory)
        try await server.start()
        try await withTimeout(10, "both shutdown() calls to return") {
            async let first: Void = server.shutdown()
            async let second: Void = server.shutdown()
            _ = try await (first, second)
        }
        #expect(server.environment.state.withLockedValue { $0 } == .stopping)
    }

    @Test("run() returns when shutdown() stops the bridge from outside")
    func runEndsOnShutdown() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = self.makeServer(in: directory)
        let run = try await self.running(server)
        try await withTimeout(10, "shutdown() and run() to return") {
            try await server.shutdown()
            try await run.value
        }
    }

    @Test("a part of the bridge that dies ends run() with its reason, once")
    func failureEndsRun() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = self.makeServer(in: directory)
        let run = try await self.running(server)
        server.fail("the local doors' event loop died (epoll_wait failed: Bad file descriptor)")
        server.fail("a second failure is not the reason")
        let outcome = try await withTimeout(10, "run() to end") { () async -> Result<Void, any Error> in
            await run.result
        }
        guard case .failure(let error as BridgeError) = outcome else {
            Issue.record("run() ended with \(outcome), not a BridgeError")
            return
        }
        #expect(error.description == "the local doors' event loop died (epoll_wait failed: Bad file descriptor)")
        #expect(server.environment.state.withLockedValue { $0 } == .stopping)
    }
}
