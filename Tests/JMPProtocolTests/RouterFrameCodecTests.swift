import Foundation
import JMPProtocolReference
import NIOCore
import SwiftProtobuf
import Testing

@testable import JMPProtocol

/// A small deterministic generator (SplitMix64) so every run sees the same "random" inputs.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { self.state = seed }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func element<T>(of array: [T]) -> T {
        array[Int.random(in: array.indices, using: &self)]
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(count)
        while result.count < count {
            var word = self.next()
            for _ in 0..<min(8, count - result.count) {
                result.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return result
    }
}

/// Protobuf wire-format helpers for building test messages by hand.
enum Wire {
    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var out: [UInt8] = []
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
        return out
    }

    static func key(_ field: UInt64, _ wireType: UInt64) -> [UInt8] { varint(field << 3 | wireType) }

    static func bytesField(_ field: UInt64, _ payload: [UInt8]) -> [UInt8] {
        key(field, 2) + varint(UInt64(payload.count)) + payload
    }

    static func enumField(_ field: UInt64, _ value: Int) -> [UInt8] {
        key(field, 0) + varint(UInt64(bitPattern: Int64(value)))
    }

    /// The 5-byte gRPC message prefix: compressed flag 0 and a big-endian length.
    static func grpcPrefix(_ length: Int) -> [UInt8] {
        [0, UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
    }
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(self.readableBytesView) }
}

/// Frame types to try: the known ones, unknown positive values around varint boundaries, and
/// negative values (encoded as 10-byte sign-extended varints).
let frameTypeWireValues: [Int] = [
    0, 3, 6, 7, 1, 2, 4, 5, 8, 15, 16, 127, 128, 255, 300, 16383, 16384, 2_097_151, 2_097_152,
    Int(Int32.max), -1, -2, -7, -128, -16384, Int(Int32.min),
]

/// Payload sizes around every varint boundary up to 256 KiB.
let payloadSizes: [Int] = [
    0, 1, 2, 126, 127, 128, 129, 255, 256, 1000, 16382, 16383, 16384, 16385, 65535, 65536, 65537, 131_072,
    262_143, 262_144,
]

private func referenceRequest(payload: [UInt8], type: Int) -> Jumpstarter_V1_StreamRequest {
    var message = Jumpstarter_V1_StreamRequest()
    message.payload = Data(payload)
    message.frameType = Jumpstarter_V1_FrameType(rawValue: type) ?? .UNRECOGNIZED(type)
    return message
}

private func referenceResponse(payload: [UInt8], type: Int) -> Jumpstarter_V1_StreamResponse {
    var message = Jumpstarter_V1_StreamResponse()
    message.payload = Data(payload)
    message.frameType = Jumpstarter_V1_FrameType(rawValue: type) ?? .UNRECOGNIZED(type)
    return message
}

/// What swift-protobuf makes of `bytes`, or nil if it rejects them.
private func referenceDecode(_ bytes: [UInt8]) -> (type: Int, payload: [UInt8])? {
    guard let message = try? Jumpstarter_V1_StreamRequest(serializedBytes: bytes) else { return nil }
    // StreamResponse has the same layout; both must agree.
    let response = try? Jumpstarter_V1_StreamResponse(serializedBytes: bytes)
    precondition(response?.payload == message.payload && response?.frameType == message.frameType)
    return (message.frameType.rawValue, [UInt8](message.payload))
}

/// What the hand codec makes of `bytes`.
private func handDecode(_ bytes: [UInt8]) -> Result<(type: Int, payload: [UInt8]), RouterFrameDecodingError> {
    do throws(RouterFrameDecodingError) {
        let frame = try RouterFrameCodec.decode(ByteBuffer(bytes: bytes))
        return .success((frame.type.wireValue, frame.payload.bytes))
    } catch {
        return .failure(error)
    }
}

@Suite("RouterFrameCodec against swift-protobuf")
struct RouterFrameCodecTests {
    // MARK: - Frame types

    @Test("RouterFrameType maps wire values both ways")
    func frameTypeMapping() {
        #expect(RouterFrameType(wireValue: 0) == .data)
        #expect(RouterFrameType(wireValue: 3) == .rstStream)
        #expect(RouterFrameType(wireValue: 6) == .ping)
        #expect(RouterFrameType(wireValue: 7) == .goaway)
        #expect(RouterFrameType(wireValue: 1) == .unknown(1))
        #expect(RouterFrameType(wireValue: -1) == .unknown(-1))
        for value in frameTypeWireValues {
            #expect(RouterFrameType(wireValue: value).wireValue == value)
            // The same numbering as the generated enum.
            #expect(Jumpstarter_V1_FrameType(rawValue: value)?.rawValue == value)
        }
        #expect(Jumpstarter_V1_FrameType.data.rawValue == RouterFrameType.data.wireValue)
        #expect(Jumpstarter_V1_FrameType.rstStream.rawValue == RouterFrameType.rstStream.wireValue)
        #expect(Jumpstarter_V1_FrameType.ping.rawValue == RouterFrameType.ping.wireValue)
        #expect(Jumpstarter_V1_FrameType.goaway.rawValue == RouterFrameType.goaway.wireValue)
    }

    // MARK: - Encoding

    @Test("encodeMessage equals swift-protobuf for every frame type and payload size")
    func encodeMessageMatchesReference() throws {
        var random = SeededGenerator(seed: 1)
        let allocator = ByteBufferAllocator()
        for size in payloadSizes {
            let payload = random.bytes(size)
            // Every type with the small sizes, a few with the large ones (keeps the test fast).
            let types = size <= 16385 ? frameTypeWireValues : [0, 3, 7, 42, -1]
            for type in types {
                let hand = RouterFrameCodec.encodeMessage(
                    type: RouterFrameType(wireValue: type),
                    payload: ByteBuffer(bytes: payload),
                    allocator: allocator
                )
                let request: [UInt8] = try referenceRequest(payload: payload, type: type).serializedBytes()
                let response: [UInt8] = try referenceResponse(payload: payload, type: type).serializedBytes()
                #expect(hand.bytes == request, "size \(size) type \(type)")
                #expect(request == response)
            }
        }
    }

    @Test("encodeMessage with random payloads and types")
    func encodeMessageRandom() throws {
        var random = SeededGenerator(seed: 2)
        let allocator = ByteBufferAllocator()
        for _ in 0..<500 {
            let size =
                switch Int.random(in: 0..<4, using: &random) {
                case 0: Int.random(in: 0...3, using: &random)
                case 1: Int.random(in: 0...300, using: &random)
                case 2: Int.random(in: 16000...17000, using: &random)
                default: Int.random(in: 0...(256 * 1024), using: &random)
                }
            let type =
                Bool.random(using: &random)
                ? random.element(of: frameTypeWireValues)
                : Int(Int32.random(in: .min ... .max, using: &random))
            let payload = random.bytes(size)
            let hand = RouterFrameCodec.encodeMessage(
                type: RouterFrameType(wireValue: type),
                payload: ByteBuffer(bytes: payload),
                allocator: allocator
            )
            let reference: [UInt8] = try referenceRequest(payload: payload, type: type).serializedBytes()
            #expect(hand.bytes == reference, "size \(size) type \(type)")
        }
    }

    @Test("encodeMessage encodes only the readable bytes of a payload slice")
    func encodeMessageOfSlice() throws {
        var backing = ByteBuffer(bytes: [9, 9, 9] + Array(1...200) + [8, 8])
        backing.moveReaderIndex(forwardBy: 3)
        let slice = try #require(backing.getSlice(at: backing.readerIndex, length: 200))
        let hand = RouterFrameCodec.encodeMessage(type: .data, payload: slice, allocator: ByteBufferAllocator())
        let reference: [UInt8] = try referenceRequest(payload: Array(1...200), type: 0).serializedBytes()
        #expect(hand.bytes == reference)
    }

    @Test("encodeDataPrefix followed by the payload is a gRPC message holding swift-protobuf's bytes")
    func encodeDataPrefixMatchesReference() throws {
        var random = SeededGenerator(seed: 3)
        var sizes = payloadSizes
        for _ in 0..<200 { sizes.append(Int.random(in: 0...(256 * 1024), using: &random)) }
        for size in sizes {
            let payload = random.bytes(size)
            var wire = ByteBuffer()
            RouterFrameCodec.encodeDataPrefix(payloadLength: size, into: &wire)
            #expect(wire.readableBytes <= RouterFrameCodec.maximumPrefixLength)
            wire.writeBytes(payload)
            let body: [UInt8] = try referenceRequest(payload: payload, type: 0).serializedBytes()
            #expect(wire.bytes == Wire.grpcPrefix(body.count) + body, "size \(size)")
        }
    }

    @Test("encodeDataPrefix appends to what the buffer already holds")
    func encodeDataPrefixAppends() {
        var wire = ByteBuffer(bytes: [0xAA, 0xBB])
        RouterFrameCodec.encodeDataPrefix(payloadLength: 3, into: &wire)
        #expect(wire.bytes == [0xAA, 0xBB, 0, 0, 0, 0, 5, 0x0A, 3])
    }

    @Test("encodeControl is a gRPC message holding swift-protobuf's bytes", arguments: frameTypeWireValues)
    func encodeControlMatchesReference(type: Int) throws {
        var wire = ByteBuffer()
        RouterFrameCodec.encodeControl(RouterFrameType(wireValue: type), into: &wire)
        #expect(wire.readableBytes <= RouterFrameCodec.maximumPrefixLength)
        let body: [UInt8] = try referenceResponse(payload: [], type: type).serializedBytes()
        #expect(wire.bytes == Wire.grpcPrefix(body.count) + body)
    }

    @Test("the well-known control frames have the expected bytes")
    func controlFrameBytes() {
        func control(_ type: RouterFrameType) -> [UInt8] {
            var wire = ByteBuffer()
            RouterFrameCodec.encodeControl(type, into: &wire)
            return wire.bytes
        }
        #expect(control(.goaway) == [0, 0, 0, 0, 2, 0x10, 7])
        #expect(control(.ping) == [0, 0, 0, 0, 2, 0x10, 6])
        #expect(control(.rstStream) == [0, 0, 0, 0, 2, 0x10, 3])
        #expect(control(.data) == [0, 0, 0, 0, 0])
        #expect(control(.unknown(-1)) == [0, 0, 0, 0, 11, 0x10] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
    }

    @Test("maximumPrefixLength covers the longest prefix")
    func maximumPrefix() {
        var wire = ByteBuffer()
        RouterFrameCodec.encodeControl(.unknown(Int(Int32.min)), into: &wire)
        #expect(wire.readableBytes <= RouterFrameCodec.maximumPrefixLength)
        wire.clear()
        RouterFrameCodec.encodeDataPrefix(payloadLength: Int(UInt32.max) / 2, into: &wire)
        #expect(wire.readableBytes <= RouterFrameCodec.maximumPrefixLength)
    }

    // MARK: - Decoding swift-protobuf output

    @Test("decode of swift-protobuf output gives back payload and type")
    func decodeReferenceOutput() throws {
        var random = SeededGenerator(seed: 4)
        for size in payloadSizes {
            let payload = random.bytes(size)
            let types = size <= 16385 ? frameTypeWireValues : [0, 3, 6, 7, 42, -1]
            for type in types {
                let bytes: [UInt8] = try referenceRequest(payload: payload, type: type).serializedBytes()
                let frame = try RouterFrameCodec.decode(ByteBuffer(bytes: bytes))
                #expect(frame.type == RouterFrameType(wireValue: type), "size \(size) type \(type)")
                #expect(frame.payload.bytes == payload, "size \(size) type \(type)")
            }
        }
        for _ in 0..<300 {
            let payload = random.bytes(Int.random(in: 0...70000, using: &random))
            let type = Int(Int32.random(in: .min ... .max, using: &random))
            let bytes: [UInt8] = try referenceResponse(payload: payload, type: type).serializedBytes()
            let frame = try RouterFrameCodec.decode(ByteBuffer(bytes: bytes))
            #expect(frame.type.wireValue == type)
            #expect(frame.payload.bytes == payload)
        }
    }

    @Test("decode of the hand encoder's output round-trips")
    func roundTrip() throws {
        var random = SeededGenerator(seed: 5)
        for _ in 0..<200 {
            let payload = random.bytes(Int.random(in: 0...20000, using: &random))
            let type = RouterFrameType(wireValue: random.element(of: frameTypeWireValues))
            let body = RouterFrameCodec.encodeMessage(
                type: type,
                payload: ByteBuffer(bytes: payload),
                allocator: ByteBufferAllocator()
            )
            let frame = try RouterFrameCodec.decode(body)
            #expect(frame.type == type)
            #expect(frame.payload.bytes == payload)
        }
    }

    @Test("decode works on a slice that does not start at index 0")
    func decodeSlice() throws {
        let body = Wire.bytesField(1, [1, 2, 3]) + Wire.enumField(2, 7)
        var buffer = ByteBuffer(bytes: Wire.grpcPrefix(body.count) + body + [0xEE, 0xEE])
        buffer.moveReaderIndex(forwardBy: 5)
        let slice = buffer.readSlice(length: body.count)
        let message = try #require(slice)
        let frame = try RouterFrameCodec.decode(message)
        #expect(frame.type == .goaway)
        #expect(frame.payload.bytes == [1, 2, 3])
    }

    @Test("an empty message is an empty DATA frame")
    func decodeEmpty() throws {
        let frame = try RouterFrameCodec.decode(ByteBuffer())
        #expect(frame.type == .data)
        #expect(frame.payload.readableBytes == 0)
        let reference = try #require(referenceDecode([]))
        #expect(reference == (0, []))
    }

    // MARK: - Decoding hand-built messages

    /// Well-formed messages that are not what an encoder would write, and what they mean.
    static let wellFormed: [(name: String, bytes: [UInt8], type: Int, payload: [UInt8])] = [
        ("fields out of order", Wire.enumField(2, 6) + Wire.bytesField(1, [1, 2]), 6, [1, 2]),
        ("payload repeated, last wins", Wire.bytesField(1, [1]) + Wire.bytesField(1, [2, 3]), 0, [2, 3]),
        (
            "payload repeated with an empty one last",
            Wire.bytesField(1, [1]) + Wire.bytesField(1, []), 0, []
        ),
        ("type repeated, last wins", Wire.enumField(2, 7) + Wire.enumField(2, 3), 3, []),
        ("type repeated, zero last", Wire.enumField(2, 7) + Wire.enumField(2, 0), 0, []),
        (
            "interleaved repeats",
            Wire.enumField(2, 7) + Wire.bytesField(1, [5]) + Wire.enumField(2, 6) + Wire.bytesField(1, [6]),
            6, [6]
        ),
        ("explicit defaults", Wire.bytesField(1, []) + Wire.enumField(2, 0), 0, []),
        ("unknown varint field", Wire.key(3, 0) + Wire.varint(300) + Wire.bytesField(1, [1]), 0, [1]),
        ("unknown 10-byte varint field", Wire.key(9, 0) + Wire.varint(UInt64.max) + Wire.enumField(2, 7), 7, []),
        ("unknown fixed64 field", Wire.key(4, 1) + [1, 2, 3, 4, 5, 6, 7, 8] + Wire.bytesField(1, [9]), 0, [9]),
        ("unknown length-delimited field", Wire.bytesField(15, [1, 2, 3]) + Wire.enumField(2, 6), 6, []),
        ("unknown empty length-delimited field", Wire.bytesField(16, []) + Wire.bytesField(1, [4]), 0, [4]),
        ("unknown fixed32 field", Wire.key(5, 5) + [1, 2, 3, 4] + Wire.enumField(2, 3), 3, []),
        ("unknown field with the largest field number", Wire.key(0x1FFF_FFFF, 0) + [1] + Wire.enumField(2, 7), 7, []),
        ("unknown field after the known ones", Wire.bytesField(1, [1]) + Wire.key(100, 5) + [0, 0, 0, 0], 0, [1]),
        ("enum value above int32 is truncated", Wire.key(2, 0) + Wire.varint(0x1_0000_0007), 7, []),
        ("negative enum encoded in 5 bytes is not sign-extended", Wire.key(2, 0) + Wire.varint(0xFFFF_FFFF), -1, []),
        ("non-minimal varint for the enum", Wire.key(2, 0) + [0x87, 0x80, 0x80, 0x00], 7, []),
        ("non-minimal varint for the length", Wire.key(1, 2) + [0x82, 0x00, 0xAA, 0xBB], 0, [0xAA, 0xBB]),
    ]

    @Test("decode of well-formed, unusual messages agrees with swift-protobuf")
    func decodeWellFormed() throws {
        for (name, bytes, type, payload) in Self.wellFormed {
            let reference = try #require(referenceDecode(bytes), "\(name)")
            #expect(reference.type == type, "\(name): swift-protobuf")
            #expect(reference.payload == payload, "\(name): swift-protobuf")
            let frame = try RouterFrameCodec.decode(ByteBuffer(bytes: bytes))
            #expect(frame.type.wireValue == type, "\(name)")
            #expect(frame.payload.bytes == payload, "\(name)")
        }
    }

    /// Malformed messages that both the hand codec and swift-protobuf reject.
    static let malformed: [(name: String, bytes: [UInt8])] = [
        ("truncated key varint", [0x80]),
        ("truncated payload length varint", [0x0A, 0x80]),
        ("truncated enum varint", [0x10, 0xFF]),
        ("truncated unknown varint", [0x18, 0x80, 0x80]),
        ("payload length past the end", [0x0A, 0x05, 1, 2, 3, 4]),
        ("payload length far past the end", Wire.key(1, 2) + Wire.varint(UInt64.max) + [1]),
        ("unknown length-delimited past the end", [0x1A, 0x02, 1]),
        ("truncated fixed64", Wire.key(3, 1) + [1, 2, 3, 4, 5, 6, 7]),
        ("truncated fixed32", Wire.key(3, 5) + [1, 2, 3]),
        ("start group without end", Wire.key(3, 3)),
        ("end group without start", Wire.key(3, 4)),
        ("wire type 6", Wire.key(3, 6) + [0]),
        ("wire type 7", Wire.key(3, 7) + [0]),
        ("11-byte varint", Wire.key(2, 0) + [UInt8](repeating: 0xFF, count: 10) + [0x01]),
        ("11-byte varint in an unknown field", Wire.key(3, 0) + [UInt8](repeating: 0x80, count: 10) + [0x00]),
        ("field number 0, varint", [0x00, 0x01]),
        ("field number 0, length-delimited", [0x02, 0x00]),
        ("field number above 2^29-1", Wire.key(0x2000_0000, 0) + [0]),
        ("valid message followed by garbage", Wire.bytesField(1, [1]) + [0xFF]),
    ]

    @Test("malformed messages are rejected, as swift-protobuf rejects them")
    func decodeMalformed() {
        for (name, bytes) in Self.malformed {
            #expect(throws: RouterFrameDecodingError.self, "\(name)") {
                try RouterFrameCodec.decode(ByteBuffer(bytes: bytes))
            }
            #expect(referenceDecode(bytes) == nil, "\(name): swift-protobuf accepts it")
        }
    }

    /// Inputs that the hand codec rejects on purpose although swift-protobuf (like the other
    /// protobuf runtimes) accepts them. None of them is ever produced by a protobuf encoder for
    /// this message, so rejecting them is stricter, not incompatible.
    static let strictRejects: [(name: String, bytes: [UInt8])] = [
        // swift-protobuf keeps a field whose wire type does not match its declaration as an
        // unknown field.
        ("payload as varint", Wire.key(1, 0) + [5]),
        ("payload as fixed32", Wire.key(1, 5) + [1, 2, 3, 4]),
        ("payload as fixed64", Wire.key(1, 1) + [1, 2, 3, 4, 5, 6, 7, 8]),
        ("frame type as length-delimited (packed)", Wire.bytesField(2, [7])),
        ("frame type as fixed32", Wire.key(2, 5) + [7, 0, 0, 0]),
        ("payload as an empty group", Wire.key(1, 3) + Wire.key(1, 4)),
        // Groups (wire types 3 and 4) are deprecated; swift-protobuf skips a well-formed one.
        ("empty unknown group", Wire.key(3, 3) + Wire.key(3, 4)),
        ("unknown group with content", Wire.key(3, 3) + Wire.enumField(2, 7) + Wire.key(3, 4)),
        // A 10-byte varint whose last byte has bits above bit 63: swift-protobuf drops them.
        ("10-byte varint overflowing 64 bits", Wire.key(2, 0) + [UInt8](repeating: 0xFF, count: 9) + [0x7F]),
    ]

    @Test("wrong wire types, groups and overflowing varints are rejected by the hand codec")
    func decodeStrictRejects() {
        for (name, bytes) in Self.strictRejects {
            #expect(throws: RouterFrameDecodingError.self, "\(name)") {
                try RouterFrameCodec.decode(ByteBuffer(bytes: bytes))
            }
            // Keep this list honest: these really are accepted by swift-protobuf.
            #expect(referenceDecode(bytes) != nil, "\(name): swift-protobuf rejects it too")
        }
    }

    @Test("decoding errors say what is wrong")
    func errorDescriptions() {
        func reason(_ bytes: [UInt8]) -> String? {
            if case .failure(let error) = handDecode(bytes) { return error.description }
            return nil
        }
        #expect(reason([0x0A, 0x05, 1]) == "malformed router frame: length 5 runs past the end of the message")
        #expect(reason([0x80]) == "malformed router frame: truncated varint")
        #expect(reason([0x08, 1]) == "malformed router frame: field 1 has wire type 0")
        #expect(reason([0x00, 1]) == "malformed router frame: invalid field number 0")
    }

    // MARK: - Random mutation

    /// A random well-formed message with random extras (unknown fields, repeats, odd order).
    private static func randomMessage(_ random: inout SeededGenerator) -> [UInt8] {
        var fields: [[UInt8]] = []
        for _ in 0..<Int.random(in: 0...4, using: &random) {
            switch Int.random(in: 0..<8, using: &random) {
            case 0, 1:
                fields.append(Wire.bytesField(1, random.bytes(Int.random(in: 0...20, using: &random))))
            case 2, 3:
                let type =
                    Bool.random(using: &random)
                    ? random.element(of: frameTypeWireValues)
                    : Int(Int32.random(in: .min ... .max, using: &random))
                fields.append(Wire.enumField(2, type))
            case 4:
                let field = UInt64.random(in: 3...2000, using: &random)
                fields.append(
                    Wire.key(field, 0) + Wire.varint(random.next() >> UInt64.random(in: 0...63, using: &random))
                )
            case 5:
                let field = UInt64.random(in: 3...2000, using: &random)
                fields.append(Wire.bytesField(field, random.bytes(Int.random(in: 0...10, using: &random))))
            case 6:
                fields.append(Wire.key(UInt64.random(in: 3...40, using: &random), 5) + random.bytes(4))
            default:
                fields.append(Wire.key(UInt64.random(in: 3...40, using: &random), 1) + random.bytes(8))
            }
        }
        return fields.flatMap { $0 }
    }

    private static func mutate(_ bytes: [UInt8], _ random: inout SeededGenerator) -> [UInt8] {
        var bytes = bytes
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            let interesting: [UInt8] = [
                0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x10, 0x12, 0x18, 0x1B, 0x1C, 0x1D, 0x1E,
            ]
            let byte =
                Bool.random(using: &random)
                ? random.element(of: interesting) : UInt8.random(in: 0...255, using: &random)
            switch Int.random(in: 0..<6, using: &random) {
            case 0 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = byte
            case 1 where !bytes.isEmpty:
                let index = Int.random(in: 0..<bytes.count, using: &random)
                bytes[index] ^= 1 << UInt8.random(in: 0...7, using: &random)
            case 2:
                bytes.insert(byte, at: Int.random(in: 0...bytes.count, using: &random))
            case 3 where !bytes.isEmpty:
                bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random))
            case 4 where !bytes.isEmpty:
                bytes.removeLast(Int.random(in: 1...bytes.count, using: &random))
            default:
                bytes.append(byte)
            }
        }
        return bytes
    }

    /// Whether the hand codec's rejection is one of its documented strict rejections of input that
    /// swift-protobuf accepts (see ``strictRejects``).
    private static func isStrictReject(_ error: RouterFrameDecodingError) -> Bool {
        error.reason.hasPrefix("field 1 has wire type") || error.reason.hasPrefix("field 2 has wire type")
            || error.reason == "unsupported wire type 3" || error.reason == "varint overflows 64 bits"
    }

    /// Whether `bytes` holds a field key that swift-protobuf refuses although it is a valid
    /// varint: a key encoded in more than 5 bytes, or a 5th key byte above 15.
    private static func hasOverlongKey(_ bytes: [UInt8]) -> Bool {
        var buffer = ByteBuffer(bytes: bytes)
        while buffer.readableBytes > 0 {
            let start = buffer.readerIndex
            guard let key = try? RouterFrameCodec.readVarint(&buffer) else { return false }
            let keyLength = buffer.readerIndex - start
            if keyLength > 5 || (keyLength == 5 && bytes[start + 4] > 15) { return true }
            guard (try? RouterFrameCodec.skipField(wireType: key & 7, in: &buffer)) != nil else { return false }
        }
        return false
    }

    @Test("random mutations: never crashes, agrees with swift-protobuf")
    func mutationLoop() {
        var random = SeededGenerator(seed: 0x5EED)
        var accepted = 0
        var rejected = 0
        var strict = 0
        var disagreements: [String] = []
        for iteration in 0..<5000 {
            let original = Self.randomMessage(&random)
            let bytes = Self.mutate(original, &random)
            let reference = referenceDecode(bytes)
            let hand = handDecode(bytes)
            switch (hand, reference) {
            case (.success(let hand), .some(let reference)):
                accepted += 1
                if hand.type != reference.type || hand.payload != reference.payload {
                    disagreements.append(
                        "#\(iteration) \(bytes): values differ: hand \(hand), swift-protobuf \(reference)"
                    )
                }
            case (.failure, .none):
                rejected += 1
            case (.failure(let error), .some):
                if Self.isStrictReject(error) {
                    strict += 1
                } else {
                    disagreements.append("#\(iteration) \(bytes): hand rejects (\(error)), swift-protobuf accepts")
                }
            case (.success, .none):
                if Self.hasOverlongKey(bytes) {
                    strict += 1
                } else {
                    disagreements.append("#\(iteration) \(bytes): hand accepts, swift-protobuf rejects")
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(20).joined(separator: "\n"))")
        // The loop must exercise both outcomes to mean anything.
        #expect(accepted > 500)
        #expect(rejected > 500)
        print(
            "mutation loop: \(accepted) accepted by both, \(rejected) rejected by both, \(strict) documented divergences"
        )
    }
}
