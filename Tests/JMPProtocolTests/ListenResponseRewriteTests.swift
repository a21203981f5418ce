import JMPProtocolReference
import NIOCore
import SwiftProtobuf
import Testing

@testable import JMPProtocol

/// The gateway's ListenResponse rewrite against swift-protobuf's generated type of
/// jumpstarter.proto (proto/jumpstarter/v1/jumpstarter.proto).
@Suite struct ListenResponseRewriteTests {
    private func encode(_ message: some SwiftProtobuf.Message) throws -> ByteBuffer {
        ByteBuffer(bytes: try message.serializedBytes() as [UInt8])
    }

    @Test func replacesTheEndpointAndKeepsTheToken() throws {
        var original = Jumpstarter_V1_ListenResponse()
        original.routerEndpoint = "router.example.com:443"
        original.routerToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
        let rewrite = try ListenResponseRewrite(try self.encode(original), endpoint: "127.0.0.1:8443")
        #expect(rewrite.routerEndpoint == "router.example.com:443")
        #expect(rewrite.routerToken == original.routerToken)
        let decoded = try Jumpstarter_V1_ListenResponse(serializedBytes: Array(rewrite.message.readableBytesView))
        #expect(decoded.routerEndpoint == "127.0.0.1:8443")
        #expect(decoded.routerToken == original.routerToken)
        #expect(decoded.unknownFields.data.isEmpty)
    }

    @Test func keepsUnknownFieldsByteForByte() throws {
        var original = Jumpstarter_V1_ListenResponse()
        original.routerEndpoint = "r:1"
        original.routerToken = "t"
        var bytes = try self.encode(original)
        // A later controller's fields: a varint (3), a string (4), a fixed64 (5) and a fixed32 (6).
        let extra: [UInt8] =
            [0x18, 0x96, 0x01, 0x22, 0x02, 0x68, 0x69, 0x29] + [UInt8](repeating: 7, count: 8) + [0x35, 1, 2, 3, 4]
        bytes.writeBytes(extra)
        let rewrite = try ListenResponseRewrite(bytes, endpoint: "gw:2")
        let decoded = try Jumpstarter_V1_ListenResponse(serializedBytes: Array(rewrite.message.readableBytesView))
        #expect(decoded.routerEndpoint == "gw:2")
        #expect(decoded.routerToken == "t")
        #expect(Array(decoded.unknownFields.data) == extra)
    }

    @Test func keepsGroupsAndAnEndpointFieldOfAnotherWireTypeAsUnknownFields() throws {
        var original = Jumpstarter_V1_ListenResponse()
        original.routerEndpoint = "r:1"
        original.routerToken = "t"
        var bytes = try self.encode(original)
        // A group 7 holding a varint 1 and a nested group 8, then a field 1 as a fixed32: both
        // are unknown fields to a protobuf parser, which keeps them.
        let extra: [UInt8] = [0x3B, 0x08, 0x01, 0x43, 0x44, 0x3C] + [0x0D, 1, 2, 3, 4]
        bytes.writeBytes(extra)
        let reference = try Jumpstarter_V1_ListenResponse(serializedBytes: Array(bytes.readableBytesView))
        #expect(Array(reference.unknownFields.data) == extra)
        let rewrite = try ListenResponseRewrite(bytes, endpoint: "gw:2")
        #expect(rewrite.routerEndpoint == "r:1")
        let decoded = try Jumpstarter_V1_ListenResponse(serializedBytes: Array(rewrite.message.readableBytesView))
        #expect(decoded.routerEndpoint == "gw:2")
        #expect(decoded.routerToken == "t")
        #expect(Array(decoded.unknownFields.data) == extra)
    }

    @Test func refusesGroupsNestedDeeperThanSwiftProtobufDoes() throws {
        let nested: (Int) -> [UInt8] = { depth in
            [0x0A, 0x01, 0x61, 0x12, 0x01, 0x74] + [UInt8](repeating: 0x3B, count: depth)
                + [UInt8](repeating: 0x3C, count: depth)
        }
        let deepest = try ListenResponseRewrite(
            ByteBuffer(bytes: nested(ProtobufField.maximumGroupDepth)),
            endpoint: "g:1"
        )
        #expect(deepest.routerToken == "t")
        #expect(throws: ProtobufWireError.self) {
            try ListenResponseRewrite(ByteBuffer(bytes: nested(ProtobufField.maximumGroupDepth + 1)), endpoint: "g:1")
        }
        // swift-protobuf draws the line at the same depth.
        #expect((try? Jumpstarter_V1_ListenResponse(serializedBytes: nested(ProtobufField.maximumGroupDepth))) != nil)
        #expect(
            (try? Jumpstarter_V1_ListenResponse(serializedBytes: nested(ProtobufField.maximumGroupDepth + 1))) == nil
        )
    }

    @Test func refusesMalformedMessages() throws {
        let cases: [[UInt8]] = [
            [0x0A, 0x05, 0x61],  // endpoint longer than the message
            [0x0A],  // truncated length
            [0x12, 0x01, 0x74],  // token but no endpoint
            [0x0A, 0x01, 0x61],  // endpoint but no token
            [0x0B],  // a group (field 1, wire type 3) without its end
            [0x0B, 0x14],  // a group ended by another group's end (field 2)
            [0x0C],  // the end of a group that never started
            [0x0E],  // wire type 6
            [0x0A, 0x01, 0x61, 0x12, 0x01, 0x74, 0xFF],  // truncated varint tag
        ]
        for bytes in cases {
            #expect(throws: ProtobufWireError.self) {
                try ListenResponseRewrite(ByteBuffer(bytes: bytes), endpoint: "x:1")
            }
        }
    }

    @Test func readsTheLeaseOfAListenRequest() throws {
        var request = Jumpstarter_V1_ListenRequest()
        request.leaseName = "lease-ü-1"
        let fields = try ProtobufField.fields(of: try self.encode(request))
        #expect(ProtobufField.string(1, in: fields) == "lease-ü-1")
    }
}
