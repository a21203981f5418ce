/// A metric's Prometheus name and help text, all in one place: swift-prometheus stops the process
/// when one name is registered with two help texts or two types, so every registration of a name
/// goes through its one ``MetricName``. The list is documented in jmp-bridge(8), METRICS.
public struct MetricName: Sendable, Hashable {
    /// The Prometheus metric name (a counter's ends in `_total`).
    public let name: String
    /// The `# HELP` text.
    public let help: String

    init(_ name: String, _ help: String) {
        self.name = name
        self.help = help
    }
}

extension MetricName {
    // Router streams, by route (a configured name, or `(none)` before the route is known).
    static let streamsActive = MetricName("jmp_bridge_streams_active", "Router streams open now.")
    static let streamsTotal = MetricName(
        "jmp_bridge_streams_total",
        "Router streams ended, by route and final gRPC status."
    )
    static let streamBytes = MetricName(
        "jmp_bridge_stream_bytes_total",
        "Payload bytes moved by router streams, by route and direction (to_target, from_target)."
    )
    static let streamDuration = MetricName(
        "jmp_bridge_stream_duration_seconds",
        "How long admitted router streams lasted, by route."
    )
    static let targetConnect = MetricName(
        "jmp_bridge_target_connect_seconds",
        "From a stream's admission until its target was connected or attached, by route (failed connects are not counted)."
    )
    static let authFailures = MetricName(
        "jmp_bridge_auth_failures_total",
        "Streams and connections refused by authentication, by listener and reason."
    )
    static let connectionsActive = MetricName(
        "jmp_bridge_connections_active",
        "Client connections open now, by listener."
    )
    static let connectionsTotal = MetricName(
        "jmp_bridge_connections_total",
        "Client connections accepted, by listener."
    )
    static let connectionsRefused = MetricName(
        "jmp_bridge_connections_refused_total",
        "Client connections closed at once because the listener served its max-connections, by listener."
    )
    /// When a TLS listener's certificate expires.
    public static let certificateExpiry = MetricName(
        "jmp_bridge_tls_certificate_expiry_timestamp_seconds",
        "When the certificate a TLS listener serves expires (its notAfter, Unix time), by listener."
    )
    /// When the first CA certificate of a CA file the bridge checks peers against expires.
    public static let caCertificateExpiry = MetricName(
        "jmp_bridge_tls_ca_certificate_expiry_timestamp_seconds",
        "When the first CA certificate of a CA file expires (its notAfter, Unix time): a listener's client-ca "
            + "or the gateway's ca, by file."
    )

    // Consoles (pty: and serial: routes).
    /// The device is open (1) or not (0).
    public static let consoleUp = MetricName(
        "jmp_bridge_console_up",
        "1 while a console route's device is open, 0 while it is down."
    )
    /// Attachments now.
    public static let consoleAttachments = MetricName(
        "jmp_bridge_console_attachments",
        "Attachments (streams, links and local attaches) to a console route now."
    )
    /// Attachments cut for lagging.
    public static let consoleCuts = MetricName(
        "jmp_bridge_console_cuts_total",
        "Console attachments cut because they lagged more than the lag limit."
    )
    /// Bytes in the scrollback.
    public static let consoleScrollback = MetricName(
        "jmp_bridge_console_scrollback_bytes",
        "Bytes held in a console route's scrollback."
    )
    /// Device reopens.
    public static let consoleReopens = MetricName(
        "jmp_bridge_console_reopens_total",
        "Times a console route's device was opened again after it went away."
    )
    /// Device output.
    public static let consoleOutput = MetricName(
        "jmp_bridge_console_output_bytes_total",
        "Bytes a console route's device printed."
    )
    /// Device input.
    public static let consoleInput = MetricName(
        "jmp_bridge_console_input_bytes_total",
        "Bytes written to a console route's device."
    )

    // Local doors.
    /// Door connections now.
    public static let doorActive = MetricName(
        "jmp_bridge_door_connections_active",
        "Connections a route's local door relays now."
    )
    /// Door connections since start.
    public static let doorTotal = MetricName(
        "jmp_bridge_door_connections_total",
        "Connections a route's local door accepted and relayed."
    )
    /// Door connections refused.
    public static let doorRefused = MetricName(
        "jmp_bridge_door_refused_total",
        "Connections a route's local door refused (over max-connections, or the target unreachable)."
    )
    /// Door bytes.
    public static let doorBytes = MetricName(
        "jmp_bridge_door_bytes_total",
        "Bytes relayed by a route's local door, by direction (to_target, from_target)."
    )

    // The exporter gateway.
    /// Relays now.
    public static let gatewayRelaysActive = MetricName(
        "jmp_bridge_gateway_relays_active",
        "Router streams the gateway relays now."
    )
    /// Relays since start.
    public static let gatewayRelaysTotal = MetricName(
        "jmp_bridge_gateway_relays_total",
        "Router streams the gateway started relaying."
    )
    /// Relay bytes.
    public static let gatewayRelayBytes = MetricName(
        "jmp_bridge_gateway_relay_bytes_total",
        "HTTP/2 DATA bytes the gateway relayed, by direction (to_router, from_router)."
    )
    /// Controller calls.
    public static let gatewayControllerCalls = MetricName(
        "jmp_bridge_gateway_controller_calls_total",
        "Calls the gateway forwarded to the controller."
    )
    /// Refused tokens.
    public static let gatewayRefusedTokens = MetricName(
        "jmp_bridge_gateway_refused_tokens_total",
        "Router streams the gateway refused: a token it never handed out, used already or expired."
    )
    /// Calls sent again.
    public static let gatewayRetriedCalls = MetricName(
        "jmp_bridge_gateway_retried_calls_total",
        "Calls the gateway sent again on a new stream: the server refused them unprocessed (GOAWAY, REFUSED_STREAM)."
    )
    /// Upstream connection states.
    public static let gatewayUpstreams = MetricName(
        "jmp_bridge_gateway_upstream_connections",
        "The gateway's upstream servers by state (1 for the state each is in), by upstream and role."
    )
    /// When the certificate an upstream server presented to the gateway expires.
    public static let gatewayUpstreamCertificateExpiry = MetricName(
        "jmp_bridge_gateway_upstream_certificate_expiry_timestamp_seconds",
        "When the certificate an upstream server presented at the gateway's latest handshake expires "
            + "(its notAfter, Unix time), by upstream and role."
    )

    // The process (the standard names of Prometheus' client libraries).
    static let processCPU = MetricName("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
    static let processRSS = MetricName("process_resident_memory_bytes", "Resident memory size in bytes.")
    static let processVirtual = MetricName("process_virtual_memory_bytes", "Virtual memory size in bytes.")
    static let processOpenFDs = MetricName("process_open_fds", "Number of open file descriptors.")
    static let processMaxFDs = MetricName("process_max_fds", "Maximum number of open file descriptors.")
    static let processStart = MetricName(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds."
    )
    static let metricsRefused = MetricName(
        "jmp_bridge_metrics_connections_refused_total",
        "Connections to this metrics endpoint answered 503 and closed because it served its limit."
    )
    static let buildInfo = MetricName(
        "jmp_bridge_build_info",
        "Always 1; the version label says which jmp-bridge runs."
    )
}
