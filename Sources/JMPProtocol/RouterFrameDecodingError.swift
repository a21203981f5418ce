import NIOCore

/// A protobuf message that is not a valid StreamRequest/StreamResponse.
public struct RouterFrameDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong with the message.
    public var reason: String

    /// Creates an error with a reason.
    public init(_ reason: String) { self.reason = reason }

    public var description: String { "malformed router frame: \(reason)" }
}
