import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import JMPBridgeCore

/// Which errors end a whole connection, and which only the stream they belong to.
@Suite("Connection errors")
struct ConnectionErrorLoggerTests {
    /// Fires `error` at the logger on a fresh connection; returns whether the connection is open after.
    private func staysOpen(after error: any Error) throws -> Bool {
        var logger = Logger(label: "jmp-bridge-test")
        logger.logLevel = .critical
        let channel = EmbeddedChannel(handler: ConnectionErrorLogger(logger: logger))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireErrorCaught(error)
        let open = channel.isActive
        _ = try? channel.finish()
        return open
    }

    @Test("a stream error spares the connection; a connection error closes it")
    func streamOrConnection() throws {
        // A WINDOW_UPDATE refused on a stream the client has half-closed: that stream's error.
        #expect(try self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition(from: .halfClosedRemoteLocalActive)))
        #expect(try self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition(from: .halfClosedLocalPeerActive)))
        #expect(try self.staysOpen(after: NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel)))
        // On an idle or closed stream NIOHTTP2 makes it a connection error (it has sent GOAWAY).
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition(from: .closed)))
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition(from: .idle)))
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.badStreamStateTransition()))
        #expect(try !self.staysOpen(after: NIOHTTP2Errors.excessiveRSTFrames()))
    }
}
