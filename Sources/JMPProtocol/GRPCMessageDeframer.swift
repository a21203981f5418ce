import NIOCore

/// Why a gRPC message stream could not be split into messages.
public enum GRPCDeframingError: Error, Hashable, Sendable {
    /// A message announced more bytes than the configured limit.
    case messageTooLarge(length: Int, limit: Int)
    /// The compressed flag was set although the stream uses the identity encoding.
    case compressedWithoutEncoding
    /// The stream ended inside a message.
    case truncated(missing: Int)
}

/// Splits the bytes of gRPC DATA frames into length-prefixed messages.
///
/// When a DATA frame holds whole messages they are returned as slices of that frame's buffer
/// (no copy); only a message that spans frames is gathered, once, into a buffer of its exact size.
/// At most one partial message (bounded by `maximumMessageLength`) is held.
public struct GRPCMessageDeframer: Sendable {
    /// The largest message accepted, in bytes (without the 5-byte prefix).
    public let maximumMessageLength: Int
    private var pending: ByteBuffer?

    /// Creates a deframer that refuses messages longer than `maximumMessageLength`.
    public init(maximumMessageLength: Int) {
        self.maximumMessageLength = maximumMessageLength
    }

    /// Bytes received that do not yet form a whole message.
    public var bufferedBytes: Int { self.pending?.readableBytes ?? 0 }

    /// Appends `bytes` and calls `body` with every message they complete, in order.
    public mutating func process(
        _ bytes: ByteBuffer,
        _ body: (ByteBuffer) throws -> Void
    ) throws {
        var bytes = bytes
        if var pending = self.pending {
            self.pending = nil
            // Complete the 5-byte prefix, then exactly the rest of this one message: bytes after
            // it are handed on as slices, not copied.
            if pending.readableBytes < 5 {
                var head = bytes.readSlice(length: min(5 - pending.readableBytes, bytes.readableBytes)) ?? ByteBuffer()
                pending.writeBuffer(&head)
                if pending.readableBytes < 5 {
                    self.pending = pending
                    return
                }
            }
            let length = try self.messageLength(at: pending.readerIndex, in: pending)
            let missing = 5 + length - pending.readableBytes
            guard bytes.readableBytes >= missing, var rest = bytes.readSlice(length: missing) else {
                pending.writeBuffer(&bytes)
                self.pending = pending
                return
            }
            pending.writeBuffer(&rest)
            pending.moveReaderIndex(forwardBy: 5)
            try body(pending)
        }
        try self.drain(&bytes, body)
    }

    /// Throws if the stream ended in the middle of a message.
    public func finish() throws(GRPCDeframingError) {
        if let pending = self.pending, pending.readableBytes > 0 {
            let announced: Int
            if pending.readableBytes >= 5, let length = pending.getInteger(at: pending.readerIndex + 1, as: UInt32.self)
            {
                announced = Int(length) + 5
            } else {
                announced = 5
            }
            throw .truncated(missing: announced - pending.readableBytes)
        }
    }

    private func messageLength(at index: Int, in buffer: ByteBuffer) throws(GRPCDeframingError) -> Int {
        guard let flag = buffer.getInteger(at: index, as: UInt8.self),
            let length32 = buffer.getInteger(at: index + 1, as: UInt32.self)
        else { return 0 }
        if flag & 0x01 != 0 { throw .compressedWithoutEncoding }
        let length = Int(length32)
        if length > self.maximumMessageLength {
            throw .messageTooLarge(length: length, limit: self.maximumMessageLength)
        }
        return length
    }

    private mutating func drain(_ buffer: inout ByteBuffer, _ body: (ByteBuffer) throws -> Void) throws {
        while buffer.readableBytes >= 5 {
            let length = try self.messageLength(at: buffer.readerIndex, in: buffer)
            guard buffer.readableBytes >= 5 + length else { break }
            buffer.moveReaderIndex(forwardBy: 5)
            if let message = buffer.readSlice(length: length) {
                try body(message)
            }
        }
        if buffer.readableBytes > 0 {
            // Keep the start of the next message in a buffer sized for all of it.
            var capacity = 5
            if buffer.readableBytes >= 5 {
                capacity += try self.messageLength(at: buffer.readerIndex, in: buffer)
            }
            var partial = ByteBufferAllocator().buffer(capacity: capacity)
            partial.writeBuffer(&buffer)
            self.pending = partial
        }
    }
}
