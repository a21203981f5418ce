import NIOCore

/// The `frame_type` of a `jumpstarter.v1` StreamRequest or StreamResponse.
///
/// Values not known to this version are kept as ``unknown(_:)`` so that they can be ignored
/// rather than treated as errors (forward compatibility: docs/WIRE.md, Frame types).
public enum RouterFrameType: Hashable, Sendable {
    /// Payload bytes of the routed stream.
    case data
    /// Abort: tear down both directions at once.
    case rstStream
    /// Keepalive: carries no data.
    case ping
    /// Half-close: the sender will send no more data.
    case goaway
    /// A value this version does not know.
    case unknown(Int)

    /// Creates the frame type for a wire value.
    public init(wireValue: Int) {
        switch wireValue {
        case 0: self = .data
        case 3: self = .rstStream
        case 6: self = .ping
        case 7: self = .goaway
        default: self = .unknown(wireValue)
        }
    }

    /// The value on the wire.
    public var wireValue: Int {
        switch self {
        case .data: return 0
        case .rstStream: return 3
        case .ping: return 6
        case .goaway: return 7
        case .unknown(let value): return value
        }
    }
}
