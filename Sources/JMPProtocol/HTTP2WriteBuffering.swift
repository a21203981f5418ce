import NIOCore

/// The write-buffer water marks of every HTTP/2 connection the bridge serves or opens.
///
/// NIOHTTP2 hands frames to its connection only while that connection is writable. With NIO's
/// default marks (32/64 KiB) a single 64 KiB gRPC message makes the connection unwritable, so each
/// DATA frame went out in its own `writev` (four system calls, four TCP pushes and four wake-ups
/// of the peer for every 256 KiB read). Marks well above one read let the frames of a read leave
/// together. Memory stays bounded: the marks cap what a connection buffers beyond its HTTP/2
/// windows, and streams stop being read once their connection stops being writable.
public enum HTTP2WriteBuffering {
    /// 1 MiB high, 512 KiB low: four of the largest reads (256 KiB) before backpressure applies.
    public static let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 512 * 1024, high: 1024 * 1024)
}
