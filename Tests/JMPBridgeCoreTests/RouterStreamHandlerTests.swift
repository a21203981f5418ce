import JMPProtocol
import JMPTargets
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import JMPBridgeCore

/// ``RouterStreamHandler`` on an `EmbeddedChannel` with a ``FakeStreamTarget``: the orderings a
/// real client and target rarely produce on demand (payload while the target connects, the
/// target closing during the connect, the wait for the last write, the RST_STREAM after the
/// trailers), each made to happen.
@Suite("Router stream handler")
struct RouterStreamHandlerTests {
    typealias Stream = EmbeddedRouterStream

    /// A stream bridged to `target`, its initial response headers already read.
    static func bridged(_ target: FakeStreamTarget, linger: TimeAmount = .seconds(5)) throws -> Stream {
        let stream = try Stream(linger: linger)
        try stream.sendHeaders()
        stream.connect(target)
        #expect(try stream.sent() == [.headers(status: "200")])
        return stream
    }

    @Test("payload is bridged both ways; the RPC ends with OK once both sides are done and the last write is in")
    func bridgesBothWays() throws {
        let target = FakeStreamTarget()
        let stream = try Stream()
        try stream.sendHeaders()
        #expect(stream.openings.routes == ["echo"])
        #expect(try stream.sent() == [], "no response before the target is connected")
        stream.connect(target)
        #expect(try stream.sent() == [.headers(status: "200")])
        #expect(target.resumedReads == 1, "the target's first read waits for the response to start")

        try stream.send([Stream.data("hello")])
        #expect(target.writes == ["hello"])
        #expect(target.flushes == 1, "flushed at the end of the read batch")

        stream.handler.targetRead(ByteBuffer(string: "world"))
        stream.handler.targetReadComplete()
        #expect(try stream.sent() == [.messages(["world"])])

        try stream.send([], endStream: true)
        #expect(target.inputFinished == [true], "the target's input ends after the last write")
        stream.handler.targetReachedEOF()
        #expect(try stream.sent() == [.messages(["<goaway>"])])
        #expect(!target.closed)

        target.completeWrite(0)
        #expect(try stream.sent() == [.end(grpcStatus: 0, message: nil, withStatusLine: false), .reset(.noError)])
        #expect(target.closed)
        #expect(stream.statistics.bytesToTargets.load(ordering: .relaxed) == 5)
        #expect(stream.statistics.bytesFromTargets.load(ordering: .relaxed) == 5)
        #expect(stream.statistics.totalStreams.load(ordering: .relaxed) == 1)
        #expect(stream.statistics.activeStreams.load(ordering: .relaxed) == 0)
        #expect(stream.statistics.failedStreams.load(ordering: .relaxed) == 0)
    }

    @Test("a window update HTTP/2 refuses after the client's END_STREAM does not fail the stream")
    func refusedWindowUpdateAfterEndStream() throws {
        let target = FakeStreamTarget()
        let stream = try Self.bridged(target)
        try stream.send([Stream.data("hi")], endStream: true)
        target.completeWrite(0)
        stream.channel.pipeline.fireErrorCaught(
            NIOHTTP2Errors.badStreamStateTransition(from: .halfClosedRemoteLocalActive)
        )
        stream.clientPauses()
        #expect(try stream.sent() == [], "the stream goes on")
        stream.handler.targetRead(ByteBuffer(string: "reply"))
        stream.handler.targetReadComplete()
        stream.handler.targetReachedEOF()
        #expect(
            try stream.sent() == [
                .messages(["reply"]), .messages(["<goaway>"]),
                .end(grpcStatus: 0, message: nil, withStatusLine: false), .reset(.noError),
            ]
        )
    }

    @Test("payload that arrives while the target connects is written in order once it has, and the held read issued")
    func payloadWhileConnecting() throws {
        let target = FakeStreamTarget()
        let stream = try Stream()
        try stream.sendHeaders()
        try stream.send([Stream.data("a"), Stream.data("b")])
        stream.channel.read()
        try stream.send([Stream.data("c")])
        #expect(stream.reads.count == 0, "no read while the target connects")
        #expect(!stream.handler.targetMayRead)

        stream.connect(target)
        #expect(target.writes == ["a", "b", "c"])
        #expect(target.flushes == 1)
        #expect(stream.reads.count == 1, "the held read is issued")
        #expect(stream.handler.targetMayRead)
        #expect(try stream.sent() == [.headers(status: "200")])
    }

    @Test("END_STREAM while the target connects half-closes it once connected")
    func endWhileConnecting() throws {
        let target = FakeStreamTarget()
        let stream = try Stream()
        try stream.sendHeaders()
        try stream.send([Stream.data("x")], endStream: true)
        stream.connect(target)
        #expect(target.writes == ["x"])
        #expect(target.inputFinished == [true])
    }

    @Test("request headers with END_STREAM end the request; the target is half-closed once connected")
    func headersEndStream() throws {
        let target = FakeStreamTarget()
        let stream = try Stream()
        try stream.sendHeaders(endStream: true)
        stream.connect(target)
        #expect(try stream.sent() == [.headers(status: "200")])
        #expect(target.inputFinished == [false], "nothing was written before the EOF")
        stream.handler.targetReachedEOF()
        #expect(
            try stream.sent() == [
                .messages(["<goaway>"]), .end(grpcStatus: 0, message: nil, withStatusLine: false), .reset(.noError),
            ]
        )
    }

    @Test("a console cut while connecting fails the stream; the target connecting later is closed")
    func consoleCutWhileConnecting() throws {
        let target = FakeStreamTarget()
        let stream = try Stream()
        try stream.sendHeaders()
        try stream.send([Stream.data("early")])
        stream.handler.targetClosed(error: ConsoleUnavailable(reason: "console 'echo' closed"))
        #expect(try stream.sent() == [], "the status waits while the client may still be writing")
        stream.clientPauses()
        #expect(
            try stream.sent() == [
                .end(grpcStatus: 14, message: "console 'echo' closed", withStatusLine: true), .reset(.noError),
            ]
        )
        stream.connect(target)
        #expect(target.closed)
        #expect(target.writes == [], "the early payload is dropped")
        #expect(try stream.sent() == [])
        #expect(stream.statistics.failedStreams.load(ordering: .relaxed) == 1)
        #expect(stream.statistics.activeStreams.load(ordering: .relaxed) == 0)
    }

    @Test("a target that closes cleanly while connecting fails the payload sent after")
    func targetClosedWhileConnecting() throws {
        let target = FakeStreamTarget()
        let stream = try Stream()
        try stream.sendHeaders()
        stream.handler.targetClosed(error: nil)
        #expect(try stream.sent() == [])
        stream.connect(target)
        #expect(try stream.sent() == [.headers(status: "200")])
        try stream.send([Stream.data("x")])
        stream.clientPauses()
        #expect(
            try stream.sent() == [
                .end(
                    grpcStatus: 14,
                    message: "route 'echo': the target closed the connection; 1 bytes could not be delivered",
                    withStatusLine: false
                ),
                .reset(.noError),
            ]
        )
        #expect(target.writes == [])
    }

    @Test("the end waits for the last write, and again for a write issued while it waited")
    func finishWaitsForLastWrite() throws {
        let target = FakeStreamTarget()
        let stream = try Self.bridged(target, linger: .seconds(1))
        stream.handler.targetReachedEOF()
        #expect(try stream.sent() == [.messages(["<goaway>"])])
        try stream.send([Stream.data("1")])
        stream.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try stream.sent() == [], "the linger passed, but the write is not in yet")

        try stream.send([Stream.data("2")])
        #expect(target.writes == ["1", "2"])
        target.completeWrite(0)
        #expect(try stream.sent() == [], "the second write is not in yet")
        target.completeWrite(1)
        #expect(try stream.sent() == [.end(grpcStatus: 0, message: nil, withStatusLine: false), .reset(.noError)])
        #expect(stream.statistics.bytesToTargets.load(ordering: .relaxed) == 2)
    }

    @Test("payload restarts the linger; a silent client is finished after it")
    func lingerRestarts() throws {
        let target = FakeStreamTarget()
        let stream = try Self.bridged(target, linger: .seconds(1))
        stream.handler.targetReachedEOF()
        _ = try stream.sent()
        stream.channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
        try stream.send([Stream.data("x")])
        target.completeWrite(0)
        stream.channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
        #expect(try stream.sent() == [], "the payload started the wait again")
        stream.channel.embeddedEventLoop.advanceTime(by: .milliseconds(400))
        #expect(try stream.sent() == [.end(grpcStatus: 0, message: nil, withStatusLine: false), .reset(.noError)])
    }

    @Test("a write that fails ends the stream with UNAVAILABLE and closes the target")
    func writeFails() throws {
        let target = FakeStreamTarget()
        let stream = try Self.bridged(target)
        try stream.send([Stream.data("x")])
        target.completeWrite(0, with: .failure(ChannelError.ioOnClosedChannel))
        stream.clientPauses()
        let sent = try stream.sent()
        guard case .end(grpcStatus: 14, let message?, withStatusLine: false)? = sent.first else {
            Issue.record("expected UNAVAILABLE trailers, got \(sent)")
            return
        }
        #expect(message.hasPrefix("route 'echo': writing to the target failed"))
        #expect(Array(sent.dropFirst()) == [.reset(.noError)])
        #expect(target.closed)
        #expect(stream.statistics.bytesToTargets.load(ordering: .relaxed) == 0)
    }

    @Test("the RST_STREAM goes out only once the trailers are written, and not on a closed stream")
    func resetAfterTrailers() throws {
        let stream = try Stream()
        try stream.sendHeaders([("jmp-route", "nope")])
        stream.clientPauses()
        #expect(
            try stream.sent() == [
                .end(grpcStatus: 5, message: "unknown route 'nope'", withStatusLine: true), .reset(.noError),
            ]
        )

        let held = try Stream()
        held.gate.isOpen = false
        try held.sendHeaders([("jmp-route", "nope")])
        held.clientPauses()
        #expect(try held.sent() == [])
        held.gate.open()
        #expect(
            try held.sent() == [
                .end(grpcStatus: 5, message: "unknown route 'nope'", withStatusLine: true), .reset(.noError),
            ]
        )

        let closed = try Stream()
        closed.gate.isOpen = false
        try closed.sendHeaders([("jmp-route", "nope")])
        closed.clientPauses()
        try closed.channel.close().wait()
        closed.gate.open()
        // (EmbeddedChannel still takes the write a closed stream channel would fail.)
        #expect(
            try closed.sent() == [.end(grpcStatus: 5, message: "unknown route 'nope'", withStatusLine: true)],
            "no RST_STREAM on a closed stream"
        )

        // A client that goes away while its error status is held back gets nothing more.
        let gone = try Stream()
        try gone.sendHeaders([("jmp-route", "nope")])
        try gone.channel.close().wait()
        gone.clientPauses()
        #expect(try gone.sent() == [])
    }

    @Test("a request that is not gRPC gets its HTTP status, then RST_STREAM, and no target")
    func notGRPC() throws {
        let stream = try Stream()
        try stream.sendHeaders([(":method", "GET")])
        #expect(try stream.sent() == [.end(grpcStatus: nil, message: nil, withStatusLine: true), .reset(.noError)])
        try stream.send([Stream.data("x")], endStream: true)
        #expect(try stream.sent() == [])
        #expect(stream.openings.routes == [])
        #expect(stream.statistics.totalStreams.load(ordering: .relaxed) == 0)
    }

    @Test("the client's deadline ends a stream still connecting; the late target is closed")
    func deadlineWhileConnecting() throws {
        let target = FakeStreamTarget()
        let stream = try Stream()
        try stream.sendHeaders([("grpc-timeout", "100m")])
        stream.channel.embeddedEventLoop.advanceTime(by: .milliseconds(99))
        #expect(try stream.sent() == [])
        stream.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(
            try stream.sent() == [
                .end(grpcStatus: 4, message: "the client's deadline (grpc-timeout) passed", withStatusLine: true),
                .reset(.noError),
            ]
        )
        stream.connect(target)
        #expect(target.closed)
    }

    @Test("a request that ends inside a message is INTERNAL")
    func truncatedRequest() throws {
        let target = FakeStreamTarget()
        let stream = try Self.bridged(target)
        var partial = Stream.data("abcdef")
        partial.moveWriterIndex(to: partial.writerIndex - 2)
        try stream.send([partial], endStream: true)
        #expect(
            try stream.sent() == [
                .end(
                    grpcStatus: 13,
                    message: "request ended inside a message (2 bytes missing)",
                    withStatusLine: false
                ),
                .reset(.noError),
            ]
        )
        #expect(target.inputFinished == [], "a broken request does not half-close the target")
        #expect(target.closed)
    }

    @Test("a client reset closes the target at once and sends nothing")
    func clientReset() throws {
        let target = FakeStreamTarget()
        let stream = try Self.bridged(target)
        try stream.send([Stream.data("x")])
        stream.channel.pipeline.fireErrorCaught(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel))
        #expect(target.closed)
        #expect(try stream.sent() == [])
        #expect(stream.statistics.failedStreams.load(ordering: .relaxed) == 0, "a cancelled stream is not a failure")
        #expect(stream.statistics.activeStreams.load(ordering: .relaxed) == 0)
        try stream.channel.close().wait()
        #expect(try stream.sent() == [])
    }

    @Test("reads from the client are held while the target cannot take more")
    func backpressure() throws {
        let target = FakeStreamTarget()
        let stream = try Self.bridged(target)
        stream.channel.read()
        #expect(stream.reads.count == 1)
        stream.handler.targetWritabilityChanged(isWritable: false)
        stream.channel.read()
        #expect(stream.reads.count == 1, "held")
        stream.handler.targetWritabilityChanged(isWritable: true)
        #expect(stream.reads.count == 2, "issued once the target can take more")
        stream.handler.targetWritabilityChanged(isWritable: true)
        #expect(stream.reads.count == 2)
    }

    @Test("the target's reads are split into payloads of at most max-payload-size")
    func targetReadSplit() throws {
        var limits = Limits()
        limits.maxPayloadSize = 4
        let stream = try Stream(limits: limits)
        try stream.sendHeaders()
        stream.connect(FakeStreamTarget())
        _ = try stream.sent()
        stream.handler.targetRead(ByteBuffer(string: "0123456789"))
        #expect(try stream.sent() == [], "written, not flushed, until the read batch ends")
        stream.handler.targetReadComplete()
        #expect(try stream.sent() == [.messages(["0123"]), .messages(["4567"]), .messages(["89"])])
    }
}
