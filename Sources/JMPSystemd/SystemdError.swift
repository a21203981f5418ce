import CSystemd
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A failure talking to the service manager.
public struct SystemdError: Error, Sendable, CustomStringConvertible {
    /// What failed and why.
    public let description: String

    /// Creates an error.
    public init(_ description: String) { self.description = description }
}
