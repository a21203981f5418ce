/// A control request that cannot be understood.
public struct ControlRequestError: Error, Sendable, Equatable {
    /// What is wrong, for the `error` reply.
    public let message: String
}
