import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import JMPBridgeCore
import NIOCore
import Synchronization
import Testing

/// Every failure ends only its own stream, with the status docs/WIRE.md names, while a neighbour
/// stream on the same HTTP/2 connection keeps every byte.
@Suite("Failures and limits", .timeLimit(.minutes(2)))
struct BridgeFailureTests {
    /// Runs `failing` next to a healthy echo stream on the same connection and returns the
    /// failing call's status code.
    func statusWithHealthyNeighbour(
        _ bridge: BridgeHarness,
        metadata: Metadata = [:],
        neighbourMetadata: Metadata = [:],
        descriptor: MethodDescriptor = Router.stream,
        options: CallOptions = .defaults,
        producer: @escaping @Sendable (RPCWriter<[UInt8]>, Signal) async throws -> Void
    ) async throws -> (RPCError.Code?, String) {
        try await bridge.withClient { client in
            // The neighbour is half-way through its transfer while the other stream fails.
            let neighbourMidway = Signal()
            let failureDone = Signal()
            async let neighbour = Router.call(client, metadata: neighbourMetadata) { writer in
                let sent = pseudoRandomBytes(count: 200_000, seed: 7)
                for (index, chunk) in sent.chunks(ofCount: 10_000).enumerated() {
                    try await writer.write(Router.data(Array(chunk)))
                    if index == 10 {
                        neighbourMidway.fire()
                        await failureDone.wait()
                    }
                }
            }
            await neighbourMidway.wait()
            let ended = Signal()
            var outcome: (RPCError.Code?, String) = (nil, "")
            do {
                _ = try await client.bidirectionalStreaming(
                    request: StreamingClientRequest(metadata: metadata) { writer in try await producer(writer, ended) },
                    descriptor: descriptor,
                    serializer: RawMessageSerializer(),
                    deserializer: RawMessageSerializer(),
                    options: options
                ) { response in
                    defer { ended.fire() }
                    for try await _ in response.messages {}
                }
            } catch let error as RPCError {
                outcome = (error.code, error.message)
            }
            failureDone.fire()
            let received = try await neighbour
            #expect(
                received.bytes.elementsEqual(pseudoRandomBytes(count: 200_000, seed: 7)),
                "the neighbour stream lost bytes"
            )
            #expect(received.goaway)
            return outcome
        }
    }

    @Test("unknown route is NOT_FOUND")
    func unknownRoute() async throws {
        try await BridgeHarness.with { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let (code, message) = try await statusWithHealthyNeighbour(bridge, metadata: ["jmp-route": "nope"]) {
                    _,
                    ended in
                    await ended.wait()
                }
                #expect(code == .notFound)
                #expect(message.contains("nope"))
            }
        }
    }

    @Test("a route name that is not [A-Za-z0-9._-]{1,64} is NOT_FOUND")
    func invalidRouteName() async throws {
        try await BridgeHarness.with { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let (code, _) = try await statusWithHealthyNeighbour(bridge, metadata: ["jmp-route": "../echo"]) {
                    _,
                    ended in
                    await ended.wait()
                }
                #expect(code == .notFound)
            }
        }
    }

    @Test("no route asked for and no default route is NOT_FOUND")
    func noDefaultRoute() async throws {
        try await BridgeHarness.with(routes: ["echo": "echo"], defaultRoute: nil) { bridge in
            try await bridge.withClient { client in
                await #expect(throws: RPCError.self) {
                    _ = try await Router.call(client) { _ in }
                }
                do {
                    _ = try await Router.call(client) { _ in }
                } catch let error as RPCError {
                    #expect(error.code == .notFound)
                    #expect(error.message.contains("default route"))
                }
            }
        }
    }

    @Test("a target socket that does not exist is UNAVAILABLE")
    func missingTarget() async throws {
        try await BridgeHarness.with(routes: ["echo": "echo", "gone": "gone"]) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let (code, message) = try await statusWithHealthyNeighbour(bridge, metadata: ["jmp-route": "gone"]) {
                    _,
                    ended in
                    await ended.wait()
                }
                #expect(code == .unavailable)
                #expect(message.contains("gone.sock"))
            }
        }
    }

    @Test("an unknown method is UNIMPLEMENTED")
    func unknownMethod() async throws {
        try await BridgeHarness.with { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let other = MethodDescriptor(fullyQualifiedService: "jumpstarter.v1.RouterService", method: "Dial")
                let (code, _) = try await statusWithHealthyNeighbour(bridge, descriptor: other) { _, ended in
                    await ended.wait()
                }
                #expect(code == .unimplemented)
            }
        }
    }

    @Test("a message over the size limit is RESOURCE_EXHAUSTED")
    func oversizedMessage() async throws {
        var limits = Limits()
        limits.maxMessageSize = 64 * 1024
        try await BridgeHarness.with(limits: limits) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let (code, message) = try await statusWithHealthyNeighbour(bridge) { writer, ended in
                    try await writer.write(Router.data([UInt8](repeating: 1, count: 100_000)))
                    await ended.wait()
                }
                #expect(code == .resourceExhausted)
                #expect(message.contains("65536"))
            }
        }
    }

    @Test("a malformed StreamRequest is INTERNAL")
    func malformedMessage() async throws {
        try await BridgeHarness.with { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let (code, message) = try await statusWithHealthyNeighbour(bridge) { writer, ended in
                    try await writer.write([0x0A, 0x05, 0x01])  // payload says 5 bytes, 1 follows
                    await ended.wait()
                }
                #expect(code == .internalError)
                #expect(message.contains("malformed"))
            }
        }
    }

    @Test("DATA after the client's GOAWAY is INVALID_ARGUMENT")
    func dataAfterGoaway() async throws {
        try await BridgeHarness.with(routes: ["echo": "echo", "quiet": "quiet"]) { bridge in
            try await TargetServer.run(at: bridge.targetPath("quiet"), handler: TargetServer.sink) {
                try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                    let (code, _) = try await statusWithHealthyNeighbour(bridge, metadata: ["jmp-route": "quiet"]) {
                        writer,
                        ended in
                        try await writer.write(Router.frame(.goaway))
                        try await writer.write(Router.data([1]))
                        await ended.wait()
                    }
                    #expect(code == .invalidArgument)
                }
            }
        } as Void
    }

    @Test("a RST_STREAM frame aborts the stream with CANCELLED and closes the target")
    func rstStreamFrame() async throws {
        let targetClosed = Signal()
        try await BridgeHarness.with(routes: ["echo": "echo", "quiet": "quiet"]) { bridge in
            let handler: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
                defer { targetClosed.fire() }
                try await connection.executeThenClose { inbound, _ in for try await _ in inbound {} }
            }
            try await TargetServer.run(at: bridge.targetPath("quiet"), handler: handler) {
                try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                    let (code, _) = try await statusWithHealthyNeighbour(bridge, metadata: ["jmp-route": "quiet"]) {
                        writer,
                        ended in
                        try await writer.write(Router.data([1, 2, 3]))
                        try await writer.write(Router.frame(.rstStream))
                        await ended.wait()
                    }
                    #expect(code == .cancelled)
                    try await withTimeout(10, "the target to be closed") { await targetClosed.wait() }
                }
            }
        }
    }

    @Test("the client's deadline ends the stream with DEADLINE_EXCEEDED")
    func deadline() async throws {
        try await BridgeHarness.with(routes: ["echo": "echo", "quiet": "quiet"]) { bridge in
            try await TargetServer.run(at: bridge.targetPath("quiet"), handler: TargetServer.sink) {
                try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                    var options = CallOptions.defaults
                    options.timeout = .milliseconds(300)
                    let (code, _) = try await statusWithHealthyNeighbour(
                        bridge,
                        metadata: ["jmp-route": "quiet"],
                        options: options
                    ) {
                        _,
                        ended in await ended.wait()
                    }
                    #expect(code == .deadlineExceeded)
                }
            }
        }
    }

    @Test("a target that closes mid-stream fails the stream with UNAVAILABLE")
    func targetClosesMidStream() async throws {
        try await BridgeHarness.with(routes: ["echo": "echo", "flaky": "flaky"]) { bridge in
            let handler: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
                // Take some bytes, then close the socket while the client is still sending.
                try await connection.executeThenClose { inbound, _ in
                    var iterator = inbound.makeAsyncIterator()
                    _ = try await iterator.next()
                }
            }
            try await TargetServer.run(at: bridge.targetPath("flaky"), handler: handler) {
                try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                    let (code, message) = try await statusWithHealthyNeighbour(bridge, metadata: ["jmp-route": "flaky"])
                    { writer, _ in
                        for chunk in pseudoRandomBytes(count: 8 << 20, seed: 3).chunks(ofCount: 32 * 1024) {
                            try await writer.write(Router.data(Array(chunk)))
                        }
                    }
                    #expect(code == .unavailable)
                    #expect(message.contains("flaky"))
                }
            }
        }
    }

    @Test("a slow target holds the client back: the bridge never holds more of the stream than its windows and buffers")
    func slowTargetBackpressure() async throws {
        var limits = Limits()
        limits.streamWindow = 1 << 20
        try await BridgeHarness.with(limits: limits) { bridge in
            // The target reads 256 KiB every 20 ms (about 12 MB/s); the client could send 24 MiB
            // at once. A proxy in front of the bridge counts what the bridge takes from the
            // client: what it holds is that minus what the target has read.
            let target = try PacedTarget(
                path: bridge.targetPath("echo"),
                chunk: 256 * 1024,
                interval: .milliseconds(20)
            )
            defer { target.stop() }
            let proxy = try CountingProxy(path: "\(bridge.directory)/proxy.sock", upstream: bridge.grpcSocket) {
                target.count
            }
            defer { proxy.stop() }
            let total = 24 << 20
            let sent = pseudoRandomBytes(count: total, seed: 11)
            _ = try await bridge.withClient(socket: proxy.path) { client in
                try await Router.call(client) { writer in
                    for piece in sent.chunks(ofCount: 64 * 1024) {
                        try await writer.write(Router.data(Array(piece)))
                    }
                }
            }
            await target.finished.wait()
            // The bound: HTTP/2 may hold up to twice the 1 MiB stream window, the target write
            // buffer is 1 MiB, one socket read 256 KiB, plus the two Unix sockets' kernel buffers
            // and framing. Were the bridge to read ahead of the target, it would hold most of
            // the 24 MiB (with a 16 MiB window this measures 23 MiB; with 1 MiB, 2.7 MiB).
            #expect(proxy.mostHeld < 6 << 20, "the bridge held \(proxy.mostHeld) bytes of a stream at once")
            #expect(proxy.forwarded > total, "the proxy saw only \(proxy.forwarded) bytes")
            #expect(target.count == total)
            #expect(target.bytes.elementsEqual(sent), "bytes were lost or reordered under backpressure")
        }
    }
}
