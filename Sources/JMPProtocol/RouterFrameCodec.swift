import NIOCore

/// A hand-written codec for `jumpstarter.v1.StreamRequest` and `StreamResponse`, which share one
/// layout: `bytes payload = 1; FrameType frame_type = 2;`.
///
/// Decoding slices the payload out of the received buffer instead of copying it, and encoding
/// writes only the few bytes that precede the payload, so the payload buffer itself can be sent
/// as it was read. It follows proto3 rules exactly: fields in any order, the last occurrence of
/// a field wins, unknown fields are skipped, and default values are not written. It is tested
/// against the swift-protobuf generated types.
public enum RouterFrameCodec {
    /// The most bytes that precede a payload: gRPC prefix (5), payload tag and length (1 + 5),
    /// frame_type tag and value (1 + 10).
    public static let maximumPrefixLength = 5 + 6 + 11

    /// Decodes one protobuf message (without the gRPC length prefix).
    public static func decode(_ message: ByteBuffer) throws(RouterFrameDecodingError) -> RouterFrame {
        var buffer = message
        var type = RouterFrameType.data
        var payload: ByteBuffer?
        while buffer.readableBytes > 0 {
            let key = try readVarint(&buffer)
            let fieldNumber = key >> 3
            let wireType = key & 0x7
            guard fieldNumber > 0 && fieldNumber <= 0x1FFF_FFFF else {
                throw RouterFrameDecodingError("invalid field number \(fieldNumber)")
            }
            switch (fieldNumber, wireType) {
            case (1, 2):
                let length = try readLength(&buffer)
                payload = buffer.readSlice(length: length)
            case (2, 0):
                // Enums are int32 on the wire; a negative value is sign-extended to 64 bits.
                let raw = try readVarint(&buffer)
                type = RouterFrameType(wireValue: Int(Int32(truncatingIfNeeded: raw)))
            case (1, _), (2, _):
                throw RouterFrameDecodingError("field \(fieldNumber) has wire type \(wireType)")
            default:
                try skipField(wireType: wireType, in: &buffer)
            }
        }
        return RouterFrame(type: type, payload: payload ?? ByteBuffer())
    }

    /// Writes a complete gRPC message (5-byte prefix and protobuf body) for a frame that carries
    /// no payload, such as GOAWAY or PING.
    public static func encodeControl(_ type: RouterFrameType, into buffer: inout ByteBuffer) {
        let typeValue = UInt64(bitPattern: Int64(type.wireValue))
        let bodyLength = typeValue == 0 ? 0 : 1 + varintSize(typeValue)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(bodyLength))
        if typeValue != 0 {
            buffer.writeInteger(UInt8(0x10))
            writeVarint(typeValue, into: &buffer)
        }
    }

    /// Writes the gRPC length prefix and the protobuf bytes that precede the payload of a DATA
    /// frame of `payloadLength` bytes; the payload itself follows on the wire unchanged, so it
    /// never has to be copied into a new buffer.
    public static func encodeDataPrefix(payloadLength: Int, into buffer: inout ByteBuffer) {
        let bodyLength = payloadLength > 0 ? 1 + varintSize(UInt64(payloadLength)) + payloadLength : 0
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(bodyLength))
        if payloadLength > 0 {
            buffer.writeInteger(UInt8(0x0A))
            writeVarint(UInt64(payloadLength), into: &buffer)
        }
    }

    /// Encodes a whole message body (no gRPC prefix) into a new buffer: used where the payload is
    /// small or the frame type is not DATA.
    public static func encodeMessage(type: RouterFrameType, payload: ByteBuffer, allocator: ByteBufferAllocator)
        -> ByteBuffer
    {
        var buffer = allocator.buffer(capacity: payload.readableBytes + maximumPrefixLength)
        let typeValue = UInt64(bitPattern: Int64(type.wireValue))
        if payload.readableBytes > 0 {
            buffer.writeInteger(UInt8(0x0A))
            writeVarint(UInt64(payload.readableBytes), into: &buffer)
            var payload = payload
            buffer.writeBuffer(&payload)
        }
        if typeValue != 0 {
            buffer.writeInteger(UInt8(0x10))
            writeVarint(typeValue, into: &buffer)
        }
        return buffer
    }

    // MARK: - Varints

    static func varintSize(_ value: UInt64) -> Int {
        var value = value
        var size = 1
        while value >= 0x80 {
            value >>= 7
            size += 1
        }
        return size
    }

    static func writeVarint(_ value: UInt64, into buffer: inout ByteBuffer) {
        var value = value
        while value >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        buffer.writeInteger(UInt8(value))
    }

    static func readVarint(_ buffer: inout ByteBuffer) throws(RouterFrameDecodingError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = buffer.readInteger(as: UInt8.self) else {
                throw RouterFrameDecodingError("truncated varint")
            }
            if shift == 63 && byte > 1 {
                throw RouterFrameDecodingError("varint overflows 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw RouterFrameDecodingError("varint longer than 10 bytes") }
        }
    }

    static func readLength(_ buffer: inout ByteBuffer) throws(RouterFrameDecodingError) -> Int {
        let length = try readVarint(&buffer)
        guard length <= UInt64(buffer.readableBytes) else {
            throw RouterFrameDecodingError("length \(length) runs past the end of the message")
        }
        return Int(length)
    }

    static func skipField(wireType: UInt64, in buffer: inout ByteBuffer) throws(RouterFrameDecodingError) {
        switch wireType {
        case 0:
            _ = try readVarint(&buffer)
        case 1:
            guard buffer.readSlice(length: 8) != nil else { throw RouterFrameDecodingError("truncated fixed64") }
        case 2:
            let length = try readLength(&buffer)
            buffer.moveReaderIndex(forwardBy: length)
        case 5:
            guard buffer.readSlice(length: 4) != nil else { throw RouterFrameDecodingError("truncated fixed32") }
        default:
            throw RouterFrameDecodingError("unsupported wire type \(wireType)")
        }
    }
}
