import CJMPSystem
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A door that cannot be set up.
public struct DoorError: Error, Sendable, CustomStringConvertible {
    /// What failed.
    public let description: String

    /// Creates the error.
    public init(_ description: String) { self.description = description }
}
