import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import JMPBridgeCore
import NIOCore
import Synchronization
import Testing

/// Stream semantics (docs/WIRE.md) against a real grpc-swift-2 client and real Unix-socket targets.
@Suite("Stream semantics", .timeLimit(.minutes(2)))
struct BridgeStreamTests {
    @Test("bytes round-trip and END_STREAM half-closes the target")
    func roundTrip() async throws {
        try await BridgeHarness.with { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let sent = pseudoRandomBytes(count: 300_000, seed: 1)
                let received = try await bridge.withClient { client in
                    try await Router.call(client) { writer in
                        for chunk in sent.chunks(ofCount: 7_000) { try await writer.write(Router.data(Array(chunk))) }
                    }
                }
                #expect(received.bytes.count == sent.count)
                #expect(received.bytes.elementsEqual(sent), "the bytes that came back differ from those sent")
                #expect(received.goaway, "the target's EOF must arrive as a GOAWAY frame")
                #expect(!received.dataAfterGoaway)
            }
        }
    }

    @Test("a GOAWAY frame half-closes the target, which can still answer")
    func clientGoawayIsHalfClose() async throws {
        let rpcOpenWhenTargetSawEOF = Box<Bool>()
        let rpcEnded = Signal()
        try await BridgeHarness.with { bridge in
            let handler: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
                try await connection.executeThenClose { inbound, _ in
                    var count = 0
                    for try await buffer in inbound { count += buffer.readableBytes }
                    rpcOpenWhenTargetSawEOF.set(!rpcEnded.isFired)
                    try await TargetServer.send(connection, ByteBuffer(string: "after-eof:\(count)"))
                    try await TargetServer.halfClose(connection)
                }
            }
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: handler) {
                let received = try await bridge.withClient { client in
                    try await Router.call(client, responseEnded: rpcEnded) { writer in
                        try await writer.write(Router.data(Array("12345".utf8)))
                        try await writer.write(Router.frame(.goaway))
                        // Keep the RPC itself open: only the GOAWAY frame says we are done.
                        await rpcEnded.wait()
                    }
                }
                #expect(String(decoding: received.bytes, as: UTF8.self) == "after-eof:5")
                #expect(received.goaway)
            }
        }
        #expect(await rpcOpenWhenTargetSawEOF.get() == true)
    }

    @Test("the target's EOF reaches the client, which can still send")
    func targetEOFIsHalfClose() async throws {
        let targetGot = Box<String>()
        try await BridgeHarness.with { bridge in
            let handler: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
                var text = ""
                do {
                    try await connection.executeThenClose { inbound, _ in
                        try await TargetServer.send(connection, ByteBuffer(string: "banner"))
                        try await TargetServer.halfClose(connection)
                        for try await buffer in inbound { text += String(buffer: buffer) }
                    }
                    targetGot.set(text)
                } catch {
                    // Reported through the expectation below rather than lost with the task.
                    targetGot.set("target failed after \(text.utf8.count) bytes: \(error)")
                }
            }
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: handler) {
                let goawaySeen = Signal()
                let received = try await bridge.withClient { client in
                    try await client.bidirectionalStreaming(
                        request: StreamingClientRequest(metadata: [:]) { writer in
                            await goawaySeen.wait()
                            try await writer.write(Router.data(Array("late data".utf8)))
                        },
                        descriptor: Router.stream,
                        serializer: RawMessageSerializer(),
                        deserializer: RawMessageSerializer(),
                        options: .defaults
                    ) { response in
                        var bytes: [UInt8] = []
                        for try await message in response.messages {
                            let frame = try Router.decode(message)
                            if frame.frameType == .goaway { goawaySeen.fire() }
                            bytes += frame.payload
                        }
                        return bytes
                    }
                }
                #expect(String(decoding: received, as: UTF8.self) == "banner")
                // Inside run: when it returns it cancels the target's handler, which may not have
                // read the late data and EOF yet even though the RPC has ended with OK.
                #expect(await targetGot.get() == "late data")
            }
        }
    }

    @Test("a client that never ends the RPC after GOAWAY is finished after the linger")
    func lingerBounded() async throws {
        try await BridgeHarness.with(linger: .milliseconds(200)) { bridge in
            let handler: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
                try await connection.executeThenClose { inbound, _ in
                    try await TargetServer.send(connection, ByteBuffer(string: "bye"))
                    try await TargetServer.halfClose(connection)
                    for try await _ in inbound {}
                }
            }
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: handler) {
                let ended = Signal()
                let received = try await withTimeout(30, "the linger to end the RPC") {
                    try await bridge.withClient { client in
                        try await Router.call(client, responseEnded: ended) { _ in await ended.wait() }
                    }
                }
                #expect(received.goaway)
                #expect(String(decoding: received.bytes, as: UTF8.self) == "bye")
            }
        }
    }

    @Test("PING and unknown frame types are ignored")
    func pingAndUnknownIgnored() async throws {
        try await BridgeHarness.with { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                let received = try await bridge.withClient { client in
                    try await Router.call(client) { writer in
                        try await writer.write(Router.data(Array("ab".utf8)))
                        try await writer.write(Router.frame(.ping))
                        try await writer.write(Router.frame(.UNRECOGNIZED(42)))
                        try await writer.write(Router.data([]))
                        try await writer.write(Router.data(Array("cd".utf8)))
                    }
                }
                #expect(String(decoding: received.bytes, as: UTF8.self) == "abcd")
            }
        }
    }

    @Test("100 concurrent streams on one connection and across connections keep their data apart")
    func concurrentStreams() async throws {
        try await BridgeHarness.with { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for connection in 0..<2 {
                        group.addTask {
                            try await bridge.withClient { client in
                                try await withThrowingTaskGroup(of: Bool.self) { streams in
                                    for index in 0..<50 {
                                        streams.addTask {
                                            let sent = pseudoRandomBytes(
                                                count: 20_000 + index * 97,
                                                seed: UInt64(connection * 1000 + index)
                                            )
                                            let received = try await Router.call(client) { writer in
                                                for chunk in sent.chunks(ofCount: 4096) {
                                                    try await writer.write(Router.data(Array(chunk)))
                                                }
                                            }
                                            return received.bytes.elementsEqual(sent) && received.goaway
                                        }
                                    }
                                    var good = 0
                                    for try await ok in streams where ok { good += 1 }
                                    #expect(good == 50)
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            #expect(bridge.server.statistics.activeStreams.load(ordering: .relaxed) == 0)
            #expect(bridge.server.statistics.totalStreams.load(ordering: .relaxed) == 100)
        }
    }

    @Test("cancelling the call closes the target connection at once")
    func clientCancelClosesTarget() async throws {
        let targetClosed = Signal()
        let targetConnected = Signal()
        try await BridgeHarness.with { bridge in
            let handler: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
                defer { targetClosed.fire() }
                try await connection.executeThenClose { inbound, _ in
                    targetConnected.fire()
                    for try await _ in inbound {}
                }
            }
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: handler) {
                try await bridge.withClient { client in
                    let call = Task {
                        try await Router.call(client) { writer in
                            try await writer.write(Router.data([1, 2, 3]))
                            try await Task.sleep(for: .seconds(3600))
                        }
                    }
                    await targetConnected.wait()
                    call.cancel()
                    _ = await call.result
                    try await withTimeout(10, "the target connection to close") { await targetClosed.wait() }
                }
            }
        }
        #expect(targetClosed.isFired)
    }
}

extension Array {
    func chunks(ofCount count: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: self.count, by: count).map { self[$0..<Swift.min($0 + count, self.count)] }
    }
}
