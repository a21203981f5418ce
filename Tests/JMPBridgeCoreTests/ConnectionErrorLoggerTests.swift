import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import JMPBridgeCore
@testable import JMPGateway

/// Which errors end a whole connection, and which only the stream they belong to: on the
/// connections the bridge serves (``ConnectionErrorLogger``) and on the gateway's pooled
/// upstream connections (``UpstreamConnectionHandler``), which carry the calls of every exporter.
@Suite("Connection errors")
struct ConnectionErrorLoggerTests {
    enum Side: CaseIterable, CustomTestStringConvertible {
        case served, upstream

        var testDescription: String { self == .served ? "served connection" : "gateway upstream connection" }

        func handler(logger: Logger) -> any ChannelHandler {
            switch self {
            case .served:
                return ConnectionErrorLogger(logger: logger)
            case .upstream:
                return UpstreamConnectionHandler(
                    endpoint: UpstreamEndpoint(host: "127.0.0.1", port: 1),
                    usesTLS: false,
                    keepalive: nil,
                    handshakeTimeout: .seconds(1),
                    logger: logger,
                    onReady: { _ in },
                    onGoAway: {},
                    onInactive: { _ in }
                )
            }
        }
    }

    /// Fires `error` at the side's last handler on a fresh connection; returns whether the
    /// connection is open after.
    private func staysOpen(after error: any Error, on side: Side) throws -> Bool {
        var logger = Logger(label: "jmp-bridge-test")
        logger.logLevel = .critical
        let channel = EmbeddedChannel(handler: side.handler(logger: logger))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireErrorCaught(error)
        let open = channel.isActive
        _ = try? channel.finish()
        return open
    }

    @Test("a stream error spares the connection; a connection error closes it", arguments: Side.allCases)
    func streamOrConnection(side: Side) throws {
        // A WINDOW_UPDATE refused on a stream the peer has half-closed: that stream's error.
        #expect(
            try self.staysOpen(
                after: NIOHTTP2Errors.badStreamStateTransition(from: .halfClosedRemoteLocalActive),
                on: side
            )
        )
        #expect(
            try self.staysOpen(
                after: NIOHTTP2Errors.badStreamStateTransition(from: .halfClosedLocalPeerActive),
                on: side
            )
        )
        #expect(try self.staysOpen(after: NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel), on: side))
        // A malformed message on one stream (RFC 9113, 8.1.1): NIOHTTP2 resets that stream.
        #expect(try self.staysOpen(after: NIOHTTP2Errors.invalidHTTP2HeaderFieldName("X-Upper"), on: side))
        #expect(try self.staysOpen(after: NIOHTTP2Errors.pseudoHeaderAfterRegularHeader(":path"), on: side))
        #expect(try self.staysOpen(after: NIOHTTP2Errors.contentLengthViolated(), on: side))
        // A stream opened after the server's GOAWAY: never sent; the connection drains on.
        #expect(try self.staysOpen(after: NIOHTTP2Errors.createdStreamAfterGoaway(), on: side))
        // On an idle or closed stream NIOHTTP2 makes it a connection error (it has sent GOAWAY).
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition(from: .closed), on: side))
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition(from: .idle), on: side))
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition(), on: side))
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.excessiveRSTFrames(), on: side))
        #expect(try !self.staysOpen(after: IOError(errnoCode: 104, reason: "read"), on: side))
    }
}
