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
