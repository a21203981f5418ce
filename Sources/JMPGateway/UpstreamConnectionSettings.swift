import NIOCore
import NIOHTTP2

/// How upstream connections are set up: HTTP/2 settings (windows as large as the bridge's own
/// listeners use), connect timeout, keepalive, and how long an unused router connection is kept.
struct UpstreamConnectionSettings: Sendable {
    var connection: NIOHTTP2Handler.ConnectionConfiguration
    var stream: NIOHTTP2Handler.StreamConfiguration
    var connectTimeout: TimeAmount
    var keepalive: TimeAmount?
    var idleTimeout: TimeAmount?

    init(
        streamWindow: Int,
        maxPayloadSize: Int,
        connectTimeout: TimeAmount,
        keepalive: TimeAmount?,
        idleTimeout: TimeAmount? = nil
    ) {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindow),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 20),
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16 * 1024),
        ]
        connection.targetWindowSize = min(streamWindow * 4, Int(Int32.max))
        connection.maximumRecentlyResetStreams = 256
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = streamWindow
        stream.outboundBufferSizeHighWatermark = 4 * maxPayloadSize
        stream.outboundBufferSizeLowWatermark = 2 * maxPayloadSize
        self.connection = connection
        self.stream = stream
        self.connectTimeout = connectTimeout
        self.keepalive = keepalive
        self.idleTimeout = idleTimeout
    }
}
