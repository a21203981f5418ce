/// A connect to a busy `unix:` target given up because the stream no longer wanted it (its
/// client went away while it waited).
public struct UnixSocketAbandoned: Error, CustomStringConvertible, Sendable {
    /// Connect attempts made.
    public var attempts: Int

    /// Creates the error.
    public init(attempts: Int) {
        self.attempts = attempts
    }

    public var description: String {
        "stopped waiting for the busy target after \(self.attempts) connect attempts: the stream is gone"
    }
}
