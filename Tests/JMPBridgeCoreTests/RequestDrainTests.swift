import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import JMPBridgeCore
@testable import JMPProtocol

/// RequestDrain on an embedded channel, whose clock the tests move: when a held error status
/// goes out (the client ended its side, went quiet, the time or byte bound), and that it does
/// not go out while a client keeps writing within the bounds.
@Suite("Request drain")
struct RequestDrainTests {
    /// Feeds every inbound frame to the drain, as RouterStreamHandler does.
    final class Feeder: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        let drain: RequestDrain
        var context: ChannelHandlerContext?
        var passedOn = 0

        init(drain: RequestDrain) { self.drain = drain }

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if !self.drain.observe(Self.unwrapInboundIn(data), context: context) { self.passedOn += 1 }
        }
    }

    let trailers: HPACKHeaders = [":status": "200", "grpc-status": "14"]

    /// An active embedded channel with a drain of `maximumBytes`, its HEADERS already seen at
    /// time zero.
    func makeChannel(maximumBytes: Int = 1000) throws -> (EmbeddedChannel, Feeder) {
        let feeder = Feeder(drain: RequestDrain(maximumBytes: maximumBytes))
        let channel = EmbeddedChannel(handler: feeder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: [":method": "POST"])))
        return (channel, feeder)
    }

    func data(_ count: Int, endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(repeating: 0, count: count)), endStream: endStream))
    }

    /// The frames written so far: trailers (with END_STREAM) and RST_STREAM.
    func written(_ channel: EmbeddedChannel) throws -> [String] {
        var frames: [String] = []
        while let frame = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) {
            switch frame {
            case .headers(let headers) where headers.endStream && headers.headers == self.trailers:
                frames.append("trailers")
            case .rstStream(.noError):
                frames.append("reset")
            default:
                frames.append("\(frame)")
            }
        }
        return frames
    }

    func send(_ feeder: Feeder, immediately: Bool = false) throws {
        let context = try #require(feeder.context)
        feeder.drain.send(
            trailers: self.trailers,
            immediately: immediately,
            context: context,
            logger: Logger(label: "test")
        )
    }

    @Test("a success status goes out at once")
    func immediately() throws {
        let (channel, feeder) = try self.makeChannel()
        try self.send(feeder, immediately: true)
        #expect(try self.written(channel) == ["trailers", "reset"])
    }

    @Test("held while the client writes; it goes out once the client has been quiet for 100 ms")
    func quiet() throws {
        let (channel, feeder) = try self.makeChannel()
        try self.send(feeder)
        for _ in 0..<5 {
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(60))
            try channel.writeInbound(self.data(10))
            #expect(try self.written(channel) == [], "sent while the client was writing")
        }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(99))
        #expect(try self.written(channel) == [])
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(try self.written(channel) == ["trailers", "reset"])
        #expect(feeder.passedOn == 1, "the held stream's DATA reached the handler")
    }

    @Test("a stream that fails as it opens waits for its first writes")
    func justOpened() throws {
        let (channel, feeder) = try self.makeChannel()
        try self.send(feeder)
        #expect(try self.written(channel) == [])
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(try self.written(channel) == ["trailers", "reset"])
    }

    @Test("a client that never stops writing gets the status after 2 s")
    func timeBound() throws {
        let (channel, feeder) = try self.makeChannel(maximumBytes: 1 << 20)
        try self.send(feeder)
        for _ in 0..<39 {
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
            try channel.writeInbound(self.data(10))
        }
        #expect(try self.written(channel) == [])
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))  // 2 s after the status
        #expect(try self.written(channel) == ["trailers", "reset"])
    }

    @Test("more DATA than the byte bound sends the status at once")
    func byteBound() throws {
        let (channel, feeder) = try self.makeChannel(maximumBytes: 1000)
        try self.send(feeder)
        try channel.writeInbound(self.data(600))
        #expect(try self.written(channel) == [])
        try channel.writeInbound(self.data(401))
        #expect(try self.written(channel) == ["trailers", "reset"])
    }

    @Test("the client's END_STREAM sends the status at once, also when it came first")
    func endStream() throws {
        let (channel, feeder) = try self.makeChannel()
        try self.send(feeder)
        try channel.writeInbound(self.data(10, endStream: true))
        #expect(try self.written(channel).first == "trailers")

        let (ended, endedFeeder) = try self.makeChannel()
        try ended.writeInbound(self.data(10, endStream: true))
        try self.send(endedFeeder)
        #expect(try self.written(ended).first == "trailers")
    }

    @Test("a stream that closes while its status is held sends nothing")
    func stopped() throws {
        let (channel, feeder) = try self.makeChannel()
        try self.send(feeder)
        feeder.drain.stop()
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        try channel.writeInbound(self.data(10, endStream: true))
        #expect(try self.written(channel) == [])
    }
}
