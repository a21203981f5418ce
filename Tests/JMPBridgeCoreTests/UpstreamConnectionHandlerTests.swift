import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import JMPGateway

/// ``UpstreamConnectionHandler`` behind a real NIOHTTP2 client on an embedded channel; the test
/// plays the server, frame by frame, as raw bytes.
@Suite struct UpstreamConnectionHandlerTests {
    /// The errors `onInactive` was called with.
    final class Closes {
        var errors: [String?] = []
    }

    /// An h2c upstream connection, connected and past the server's SETTINGS.
    func makeConnection() throws -> (EmbeddedChannel, Closes) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let closes = Closes()
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(
            NIOHTTP2Handler(
                mode: .client,
                eventLoop: loop,
                connectionConfiguration: .init(),
                streamConfiguration: .init()
            ) { $0.close() }
        )
        try sync.addHandler(
            UpstreamConnectionHandler(
                endpoint: UpstreamEndpoint(host: "127.0.0.1", port: 8083),
                usesTLS: false,
                keepalive: nil,
                handshakeTimeout: .seconds(5),
                logger: Logger(label: "test"),
                onReady: { _ in },
                onGoAway: {},
                onInactive: { error in closes.errors.append(error.map { "\($0)" }) }
            )
        )
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8083)).wait()
        try channel.writeInbound(Self.frame(type: 0x4, payload: []))  // SETTINGS
        return (channel, closes)
    }

    /// One HTTP/2 frame on stream 0.
    static func frame(type: UInt8, payload: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(payload.count) << 8 | UInt32(type))  // 24-bit length, type
        buffer.writeInteger(UInt8(0))  // flags
        buffer.writeInteger(UInt32(0))  // stream 0
        buffer.writeBytes(payload)
        return buffer
    }

    @Test func aFrameAfterTheServersGoawayClosesTheConnectionWithoutAnError() throws {
        let (channel, closes) = try self.makeConnection()
        // GOAWAY (no error) with no stream open, which leaves NIOHTTP2 nothing to do on the
        // connection, then a WINDOW_UPDATE, as grpcio servers send after a call's end.
        try channel.writeInbound(Self.frame(type: 0x7, payload: [UInt8](repeating: 0, count: 8)))
        try channel.writeInbound(Self.frame(type: 0x8, payload: [0, 1, 0, 0]))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
        #expect(closes.errors.count == 1)
        #expect(closes.errors.first == .some(nil))
    }

    @Test func aConnectionErrorIsWhatClosedTheConnection() throws {
        let (channel, closes) = try self.makeConnection()
        // DATA on stream 0: a frame NIOHTTP2 cannot parse, a connection error.
        try channel.writeInbound(Self.frame(type: 0x0, payload: [0x78]))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
        #expect(closes.errors.count == 1)
        let error = try #require(closes.errors.first ?? nil)
        #expect(error.contains("UnableToParseFrame"), "\(error)")
    }
}
