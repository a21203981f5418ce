import JMPProtocol
import JMPTargets
import NIOCore
import Testing

@testable import JMPBridgeCore

/// The status each kind of failure ends a stream with.
@Suite("Stream status mapping")
struct StreamStatusMappingTests {
    @Test("request errors map to the status of the status table")
    func requestErrors() {
        let status = GRPCStatus(.permissionDenied, "no")
        #expect(StreamStatusMapping.status(for: status) == status)
        #expect(
            StreamStatusMapping.status(for: GRPCDeframingError.messageTooLarge(length: 10, limit: 5))
                == GRPCStatus(.resourceExhausted, "message of 10 bytes exceeds the limit of 5 bytes")
        )
        #expect(
            StreamStatusMapping.status(for: GRPCDeframingError.compressedWithoutEncoding)
                == GRPCStatus(.internal, "compressed message on a stream without grpc-encoding")
        )
        #expect(
            StreamStatusMapping.status(for: GRPCDeframingError.truncated(missing: 3))
                == GRPCStatus(.internal, "request ended inside a message (3 bytes missing)")
        )
        #expect(
            StreamStatusMapping.status(for: RouterFrameDecodingError("truncated varint"))
                == GRPCStatus(.internal, "malformed StreamRequest: truncated varint")
        )
        #expect(StreamStatusMapping.status(for: ChannelError.eof).code == .internal)
    }

    @Test("target failures are UNAVAILABLE and name the route; a lagging console is RESOURCE_EXHAUSTED")
    func targetFailures() {
        let refused = IOError(errnoCode: 111, reason: "connect")
        let connect = StreamStatusMapping.connectFailed(route: "r", target: .unix(path: "/s"), error: refused)
        #expect(connect.code == .unavailable)
        #expect(connect.message == "route 'r': cannot connect to unix:/s: \(describeSocketError(refused))")
        #expect(
            StreamStatusMapping.connectFailed(
                route: "r",
                target: .unix(path: "/s"),
                error: ConsoleUnavailable(reason: "down", lagged: true)
            )
                == GRPCStatus(.unavailable, "down"),
            "a console that cannot be attached to is unavailable, lagging or not"
        )
        #expect(
            StreamStatusMapping.targetFailed(route: "r", error: refused).message.hasPrefix(
                "route 'r': target connection failed: "
            )
        )
        #expect(
            StreamStatusMapping.targetFailed(route: "r", error: ConsoleUnavailable(reason: "slow", lagged: true))
                == GRPCStatus(.resourceExhausted, "slow")
        )
        #expect(StreamStatusMapping.consoleCut(ConsoleUnavailable(reason: "gone")) == GRPCStatus(.unavailable, "gone"))
        #expect(StreamStatusMapping.writeFailed(route: "r", error: refused).code == .unavailable)
    }
}
