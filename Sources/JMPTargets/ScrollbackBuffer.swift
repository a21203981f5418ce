import NIOCore

/// The last `capacity` bytes a console printed, replayed to each new attachment.
public struct ScrollbackBuffer: Sendable {
    /// The most bytes kept.
    public let capacity: Int
    private var buffer: ByteBuffer

    /// Creates an empty scrollback of `capacity` bytes (0 keeps nothing).
    public init(capacity: Int) {
        self.capacity = capacity
        self.buffer = ByteBufferAllocator().buffer(capacity: min(capacity, 64 * 1024))
    }

    /// Appends output, forgetting the oldest bytes beyond ``capacity``.
    public mutating func append(_ bytes: ByteBuffer) {
        guard self.capacity > 0 else { return }
        var bytes = bytes
        if bytes.readableBytes >= self.capacity {
            bytes.moveReaderIndex(forwardBy: bytes.readableBytes - self.capacity)
            self.buffer.clear()
        }
        self.buffer.writeBuffer(&bytes)
        let excess = self.buffer.readableBytes - self.capacity
        if excess > 0 {
            self.buffer.moveReaderIndex(forwardBy: excess)
        }
        if self.buffer.readerIndex > self.capacity {
            self.buffer.discardReadBytes()
        }
    }

    /// What is kept, oldest first.
    public var contents: ByteBuffer { self.buffer }
}
