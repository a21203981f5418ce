import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Why a console attachment ended or could not start.
public struct ConsoleUnavailable: Error, Sendable, CustomStringConvertible {
    /// Why.
    public let reason: String
    /// The attachment was cut for lagging (RESOURCE_EXHAUSTED) rather than the console failing.
    public let lagged: Bool

    /// Creates the error.
    public init(reason: String, lagged: Bool = false) {
        self.reason = reason
        self.lagged = lagged
    }

    public var description: String { self.reason }
}
