import NIOCore

/// A decoded StreamRequest/StreamResponse: its frame type and a slice of the received buffer
/// holding the payload (no copy).
public struct RouterFrame: Sendable {
    /// What the frame means.
    public var type: RouterFrameType
    /// The payload bytes; empty for frames that carry none.
    public var payload: ByteBuffer

    /// Creates a frame.
    public init(type: RouterFrameType, payload: ByteBuffer) {
        self.type = type
        self.payload = payload
    }
}
