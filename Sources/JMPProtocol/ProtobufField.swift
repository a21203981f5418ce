import NIOCore

/// One field of a protobuf message as it is on the wire: its number, its wire type, the bytes of
/// the whole field (tag included) and, for a length-delimited field, the bytes of its value.
///
/// Used where the bridge reads or rewrites a field of a message without knowing (or re-encoding)
/// the rest of it: every field it does not touch is copied byte for byte, unknown ones included.
public struct ProtobufField: Sendable {
    /// The field number.
    public var number: UInt64
    /// The wire type: 0 varint, 1 fixed 64-bit, 2 length-delimited, 3 group (start tag to end
    /// tag), 5 fixed 32-bit.
    public var wireType: UInt8
    /// The whole field, tag first.
    public var bytes: ByteBuffer
    /// A length-delimited field's value (without its length); nil for the other wire types.
    public var value: ByteBuffer?

    /// The fields of `message`, in order, or the reason it is not a valid protobuf message.
    public static func fields(of message: ByteBuffer) throws(ProtobufWireError) -> [ProtobufField] {
        var buffer = message
        var fields: [ProtobufField] = []
        while buffer.readableBytes > 0 {
            let start = buffer.readerIndex
            let (number, wireType) = try Self.readTag(&buffer)
            guard wireType != 4 else { throw ProtobufWireError("end of group \(number) without its start") }
            let value = try Self.readValue(of: number, wireType: wireType, from: &buffer, depth: 0)
            let whole = message.getSlice(at: start, length: buffer.readerIndex - start) ?? ByteBuffer()
            fields.append(ProtobufField(number: number, wireType: wireType, bytes: whole, value: value))
        }
        return fields
    }

    /// How deep groups may nest: as deep as swift-protobuf lets them (its default depth limit,
    /// 100, counts the message itself).
    static let maximumGroupDepth = 99

    /// A field's number and wire type, from its tag.
    private static func readTag(_ buffer: inout ByteBuffer) throws(ProtobufWireError) -> (UInt64, UInt8) {
        let tag = try Self.readVarint(&buffer)
        guard tag >> 3 > 0 else { throw ProtobufWireError("field number 0") }
        return (tag >> 3, UInt8(tag & 7))
    }

    /// Reads past the value of field `number`, whose tag was just read; returns the value of a
    /// length-delimited field. A group (wire type 3: proto2's groups, or editions' delimited
    /// encoding) is read up to its end tag, as every protobuf parser keeps it as an unknown field.
    private static func readValue(
        of number: UInt64,
        wireType: UInt8,
        from buffer: inout ByteBuffer,
        depth: Int
    ) throws(ProtobufWireError) -> ByteBuffer? {
        switch wireType {
        case 0:
            _ = try Self.readVarint(&buffer)
        case 1:
            guard buffer.readableBytes >= 8 else { throw ProtobufWireError("truncated 64-bit field \(number)") }
            buffer.moveReaderIndex(forwardBy: 8)
        case 2:
            let length = try Self.readVarint(&buffer)
            guard length <= UInt64(buffer.readableBytes), let slice = buffer.readSlice(length: Int(length)) else {
                throw ProtobufWireError("field \(number) is longer than the message")
            }
            return slice
        case 3:
            guard depth < Self.maximumGroupDepth else {
                throw ProtobufWireError("groups nested deeper than \(Self.maximumGroupDepth)")
            }
            while true {
                guard buffer.readableBytes > 0 else { throw ProtobufWireError("group \(number) without its end") }
                let (inner, innerType) = try Self.readTag(&buffer)
                if innerType == 4 {
                    guard inner == number else {
                        throw ProtobufWireError("group \(number) ended by the end of group \(inner)")
                    }
                    return nil
                }
                _ = try Self.readValue(of: inner, wireType: innerType, from: &buffer, depth: depth + 1)
            }
        case 5:
            guard buffer.readableBytes >= 4 else { throw ProtobufWireError("truncated 32-bit field \(number)") }
            buffer.moveReaderIndex(forwardBy: 4)
        default:
            throw ProtobufWireError("field \(number) has unsupported wire type \(wireType)")
        }
        return nil
    }

    /// The last value of string field `number` in `fields` (protobuf's rule: the last one wins),
    /// or nil when the field is absent or not valid UTF-8.
    public static func string(_ number: UInt64, in fields: [ProtobufField]) -> String? {
        guard let field = fields.last(where: { $0.number == number && $0.wireType == 2 }), let value = field.value
        else { return nil }
        return String(validating: value.readableBytesView, as: UTF8.self)
    }

    /// Appends string field `number` with `value` to `buffer`.
    public static func writeString(_ number: UInt64, _ value: String, to buffer: inout ByteBuffer) {
        Self.writeVarint(number << 3 | 2, to: &buffer)
        Self.writeVarint(UInt64(value.utf8.count), to: &buffer)
        buffer.writeString(value)
    }

    static func readVarint(_ buffer: inout ByteBuffer) throws(ProtobufWireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = buffer.readInteger(as: UInt8.self) {
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            guard shift < 64 else { throw ProtobufWireError("varint longer than 10 bytes") }
        }
        throw ProtobufWireError("truncated varint")
    }

    static func writeVarint(_ value: UInt64, to buffer: inout ByteBuffer) {
        var value = value
        while value >= 0x80 {
            buffer.writeInteger(UInt8(value & 0x7F | 0x80))
            value >>= 7
        }
        buffer.writeInteger(UInt8(value))
    }
}
