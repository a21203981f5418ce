/// What one route's door has done, for `jmp-bridge status`.
public struct DoorStatistics: Sendable, Equatable {
    /// Connections relayed right now.
    public var active = 0
    /// Connections relayed since the door opened.
    public var total = 0
    /// Connections refused: over the door's `max-connections`, or the target unreachable.
    public var refused = 0
    /// Bytes relayed to the target, counted as they move.
    public var bytesToTarget = 0
    /// Bytes relayed from the target, counted as they move.
    public var bytesFromTarget = 0

    /// Empty counters.
    public init() {}
}
