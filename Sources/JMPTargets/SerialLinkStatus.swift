/// What a ``SerialLink`` dropped because its program flushed its input, for `status`, and the
/// input it holds.
public struct SerialLinkStatus: Sendable, Equatable {
    /// Times the program flushed its input (`TCIFLUSH`) since start: PySerial does each time it
    /// opens the port.
    public var flushes: Int
    /// Output bytes dropped in the bridge since start because they were waiting when the program
    /// flushed.
    public var flushedBytes: Int
    /// What the program typed that is on its way to the device now; from
    /// ``SerialLink/inputHighWatermark`` on, the link holds back further input.
    public var inputInFlight: Int
}
