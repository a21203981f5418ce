/// A reason the bridge cannot start (a listener that cannot bind, a TLS file that cannot be
/// loaded, …), worded for the operator.
public struct BridgeStartupError: Error, Sendable, CustomStringConvertible {
    /// The explanation.
    public var description: String

    /// Creates an error.
    public init(_ description: String) {
        self.description = description
    }
}
