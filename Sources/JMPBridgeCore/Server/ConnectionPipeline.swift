import JMPGateway
import JMPMetrics
import NIOCore
import NIOHTTP2
import NIOSSL

/// Sets up one accepted connection: TLS if the listener has it, then HTTP/2 with a
/// ``RouterStreamHandler`` on every stream the client opens (on a gateway listener, the
/// gateway's stream handler instead).
struct ConnectionPipeline: Sendable {
    /// How long a new connection has to complete its TLS handshake (if any) and send the
    /// HTTP/2 preface before it is closed (see ``PrefaceTimeoutHandler``).
    static let prefaceTimeout = TimeAmount.seconds(10)
    /// How long a connection the bridge is done with stays open for the client to close it first
    /// (see ``LingeringCloseHandler``).
    static let closeLinger = TimeAmount.seconds(1)

    let environment: BridgeContext
    /// The listener's TLS context, read for each new connection (``BridgeServer/reloadTLS()``
    /// replaces it).
    let tls: TLSContextBox?
    let graceTime: TimeAmount
    let idleExit: IdleExitTimer?
    let security: ListenerSecurity
    /// The exporter gateway whose listener this is; nil: a listener of routes.
    var gateway: Gateway? = nil

    /// Counts the connection against the listener's `max-connections` and checks the peer of a
    /// `unix:` listener with a `peer` allowlist (a refused connection is closed before TLS and
    /// HTTP/2 start, with a log line), then sets up the pipeline.
    func initialize(_ channel: any Channel) -> EventLoopFuture<Void> {
        let connections = self.security.connections
        guard connections.admit() else {
            self.security.metrics?.connectionRefused()
            self.environment.logger.warning(
                "refused a connection: max-connections reached",
                metadata: ["listener": "\(self.security.listener)", "max-connections": "\(connections.limit)"]
            )
            return channel.eventLoop.makeFailedFuture(ConnectionsExhausted(limit: connections.limit))
        }
        channel.closeFuture.whenComplete { _ in connections.release() }
        guard let allowlist = self.security.peer else {
            return channel.eventLoop.makeCompletedFuture { try self.configure(channel) }
        }
        let logger = self.environment.logger
        let listener = self.security.listener
        let metrics = self.security.metrics
        return PeerCredentials.of(channel).flatMapThrowing { credentials in
            guard allowlist.admits(uid: credentials.uid, gid: credentials.gid) else {
                metrics?.authenticationFailed(.peer)
                logger.warning(
                    "refused a connection: peer not on the listener's allowlist",
                    metadata: ["listener": "\(listener)", "peer": "\(credentials)"]
                )
                throw PeerRefused(credentials: credentials)
            }
            try self.configure(channel)
        }
    }

    func configure(_ channel: any Channel) throws {
        let statistics = self.environment.statistics
        statistics.activeConnections.add(1, ordering: .relaxed)
        self.idleExit?.connectionOpened()
        let metrics = self.security.metrics
        metrics?.connectionOpened()
        channel.closeFuture.whenComplete { [idleExit] _ in
            statistics.activeConnections.subtract(1, ordering: .relaxed)
            idleExit?.connectionClosed()
            metrics?.connectionClosed()
        }
        let sync = channel.pipeline.syncOperations
        if let tls = self.tls {
            try sync.addHandler(NIOSSLServerHandler(context: tls.context))
        }
        try sync.addHandler(PrefaceTimeoutHandler(timeout: Self.prefaceTimeout, logger: self.environment.logger))
        try sync.addHandler(LingeringCloseHandler(linger: Self.closeLinger))
        let limits = self.environment.limits
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        // Twice the limit is advertised, so that a client opening one stream too many is told
        // RESOURCE_EXHAUSTED (see RouterStreamAuthorizer) instead of waiting silently; beyond that,
        // HTTP/2 itself refuses the stream.
        let advertisedStreams = 2 * limits.maxStreamsPerConnection
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: advertisedStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: limits.streamWindow),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 20),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16 * 1024),
        ]
        // The bridge ends a stream (trailers, then RST_STREAM) as soon as both directions are
        // done, often before the client's END_STREAM for it has arrived. NIO treats a frame on a
        // closed stream it no longer remembers as a connection error, which would lose the frames
        // of every other stream in the same read; remember as many resets as streams may be open.
        connection.maximumRecentlyResetStreams = max(
            32,  // NIO's default
            2 * advertisedStreams
        )
        // The connection window covers every stream; give it room for several busy streams.
        connection.targetWindowSize = min(limits.streamWindow * 4, Int(Int32.max))
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = limits.streamWindow
        // How much a stream may queue towards a client whose window is exhausted before the
        // bridge stops reading from the target.
        stream.outboundBufferSizeHighWatermark = 4 * limits.maxPayloadSize
        stream.outboundBufferSizeLowWatermark = 2 * limits.maxPayloadSize

        // Jumpstarter clients ping every 20 s even with no call in flight: answer, never police.
        // (A client gone silent is found by ConnectionKeepaliveHandler, which logs why it closes.)
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(maxIdleTime: nil, maxAge: nil, maxGraceTime: self.graceTime, keepalive: nil)
        )
        let environment = self.environment
        let security = self.security
        let gateway = self.gateway
        let streams = ConnectionStreams()
        let http2 = NIOHTTP2Handler(
            mode: .server,
            eventLoop: channel.eventLoop,
            connectionConfiguration: connection,
            streamConfiguration: stream,
            streamDelegate: management.http2StreamDelegate
        ) { streamChannel in
            streamChannel.eventLoop.makeCompletedFuture {
                if let gateway {
                    try streamChannel.pipeline.syncOperations.addHandler(gateway.makeStreamHandler())
                } else {
                    try streamChannel.pipeline.syncOperations.addHandler(
                        RouterStreamHandler(environment: environment, security: security, connection: streams)
                    )
                }
            }
        }
        try sync.addHandler(http2)
        try sync.addHandler(management)
        if let keepalive = limits.keepalive {
            try sync.addHandler(ConnectionKeepaliveHandler(keepalive: keepalive, logger: environment.logger))
        }
        try sync.addHandler(ConnectionErrorLogger(logger: environment.logger))
    }
}
