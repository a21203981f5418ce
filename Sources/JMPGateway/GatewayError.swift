/// The gateway cannot start: a CA file that cannot be read or used.
public struct GatewayError: Error, Sendable, CustomStringConvertible {
    /// What is wrong, naming the file.
    public var description: String
    init(_ description: String) { self.description = description }
}
