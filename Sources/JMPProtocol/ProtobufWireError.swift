/// Why bytes are not a valid protobuf message.
public struct ProtobufWireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public var description: String
    public init(_ description: String) { self.description = description }
}
