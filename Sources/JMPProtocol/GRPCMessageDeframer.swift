import NIOCore

/// Splits the bytes of gRPC DATA frames into length-prefixed messages.
///
/// A message that spans frames is gathered, once, into a buffer of its exact size. Whole messages
/// inside one frame are returned as slices: of that frame's own buffer, or, with
/// `ownsMessages`, of one buffer per frame that the run of whole messages is copied into.
/// At most one partial message (bounded by `maximumMessageLength`) is held.
///
/// `ownsMessages` exists for NIOHTTP2's frame decoder: it copies every received byte into its
/// own accumulation buffer and hands DATA frames up as slices of it. While any such slice is
/// alive (queued for a slow socket, say), its next append cannot reuse that buffer: copy-on-write
/// then copies the buffer's whole capacity, stale bytes included, into fresh memory, read after
/// read. Copying each frame's messages out once, straight away, leaves the decoder's buffer
/// unshared, so its own copy stays in the same warm memory. Together with one read per event and
/// a deeper target write buffer, this took the bridge from about 2.0 to 1.0 CPU seconds per GiB
/// of 64 KiB frames (bench/README.md).
public struct GRPCMessageDeframer: Sendable {
    /// The largest message accepted, in bytes (without the 5-byte prefix).
    public let maximumMessageLength: Int
    /// Whether messages are copied out of the buffers passed to ``process(_:_:)`` instead of
    /// sliced from them (see the type's description).
    public let ownsMessages: Bool
    private var pending: ByteBuffer?

    /// Creates a deframer that refuses messages longer than `maximumMessageLength`; with
    /// `ownsMessages`, no message it returns shares storage with a buffer passed in.
    public init(maximumMessageLength: Int, ownsMessages: Bool = false) {
        self.maximumMessageLength = maximumMessageLength
        self.ownsMessages = ownsMessages
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
            // it are handled by drain(_:_:).
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
        if self.ownsMessages {
            // Copy the run of whole messages at the front in one go, then slice that copy.
            let whole = self.wholeMessagesLength(in: buffer)
            if whole > 0, var run = buffer.readSlice(length: whole) {
                var owned = ByteBufferAllocator().buffer(capacity: whole)
                owned.writeBuffer(&run)
                try self.slice(&owned, body)
            }
        }
        try self.slice(&buffer, body)
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

    /// The length of the run of whole, valid messages (prefixes included) at the front of
    /// `buffer`; an invalid prefix ends the run (``slice(_:_:)`` then throws for it, in order).
    private func wholeMessagesLength(in buffer: ByteBuffer) -> Int {
        var offset = 0
        while buffer.readableBytes - offset >= 5 {
            guard let length = try? self.messageLength(at: buffer.readerIndex + offset, in: buffer),
                buffer.readableBytes - offset >= 5 + length
            else { break }
            offset += 5 + length
        }
        return offset
    }

    /// Calls `body` with every whole message at the front of `buffer`, as slices of it.
    private func slice(_ buffer: inout ByteBuffer, _ body: (ByteBuffer) throws -> Void) throws {
        while buffer.readableBytes >= 5 {
            let length = try self.messageLength(at: buffer.readerIndex, in: buffer)
            guard buffer.readableBytes >= 5 + length else { break }
            buffer.moveReaderIndex(forwardBy: 5)
            if let message = buffer.readSlice(length: length) {
                try body(message)
            }
        }
    }
}
