/// Why the bridge cannot do what it was asked, worded for the operator: a listener that cannot
/// bind or a TLS file that cannot be loaded (at start or on reload), or a part of the running
/// bridge that died (its doors' event loop), which ends ``BridgeServer/run()`` with this error.
public struct BridgeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The explanation.
    public var description: String

    /// Creates an error.
    public init(_ description: String) {
        self.description = description
    }
}
