import Prometheus

/// The data-path metrics of one route, looked up once when a stream is admitted: each update is
/// one relaxed atomic operation, so counting every DATA frame costs nothing measurable.
public final class RouteMetrics: Sendable {
    /// The route's name: the label value.
    public let route: String
    private let active: Gauge
    private let toTarget: Counter
    private let fromTarget: Counter
    private let duration: DurationHistogram
    private let connect: DurationHistogram

    /// Stream lengths: seconds for a command, hours for a console session.
    static let durationBuckets: [Duration] = [
        .milliseconds(100), .seconds(1), .seconds(10), .seconds(60), .seconds(300), .seconds(1800),
        .seconds(3600), .seconds(4 * 3600), .seconds(24 * 3600),
    ]
    /// Target connects: a local socket answers in microseconds, a busy one is waited for.
    static let connectBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    init(route: String, registry: PrometheusCollectorRegistry) {
        self.route = route
        let labels = [("route", route)]
        self.active = registry.makeGauge(MetricName.streamsActive, labels: labels)
        self.toTarget = registry.makeCounter(MetricName.streamBytes, labels: labels + [("direction", "to_target")])
        self.fromTarget = registry.makeCounter(MetricName.streamBytes, labels: labels + [("direction", "from_target")])
        self.duration = registry.makeDurationHistogram(
            MetricName.streamDuration,
            labels: labels,
            buckets: Self.durationBuckets
        )
        self.connect = registry.makeDurationHistogram(
            MetricName.targetConnect,
            labels: labels,
            buckets: Self.connectBuckets
        )
    }

    /// A stream was admitted.
    public func streamOpened() { self.active.increment(by: 1) }

    /// An admitted stream ended after `duration`.
    public func streamClosed(after duration: Duration) {
        self.active.decrement(by: 1)
        self.duration.record(duration)
    }

    /// `count` payload bytes reached the target.
    @inline(__always)
    public func movedToTarget(_ count: Int) { self.toTarget.increment(by: Int64(count)) }

    /// `count` payload bytes went to the client.
    @inline(__always)
    public func movedFromTarget(_ count: Int) { self.fromTarget.increment(by: Int64(count)) }

    /// The target was connected `duration` after admission.
    public func targetConnected(after duration: Duration) { self.connect.record(duration) }
}
