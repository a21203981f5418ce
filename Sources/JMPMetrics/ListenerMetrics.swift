import Prometheus

/// The connection metrics of one gRPC listener, looked up once per accepted connection.
public final class ListenerMetrics: Sendable {
    /// The listener's configured address: the label value.
    public let listener: String
    private let registry: PrometheusCollectorRegistry
    private let active: Gauge
    private let total: Counter
    private let refused: Counter

    init(listener: String, registry: PrometheusCollectorRegistry) {
        self.listener = listener
        self.registry = registry
        self.active = registry.makeGauge(MetricName.connectionsActive, labels: [("listener", listener)])
        self.total = registry.makeCounter(MetricName.connectionsTotal, labels: [("listener", listener)])
        self.refused = registry.makeCounter(MetricName.connectionsRefused, labels: [("listener", listener)])
    }

    /// A connection was accepted.
    public func connectionOpened() {
        self.total.increment()
        self.active.increment(by: 1)
    }

    /// An accepted connection closed.
    public func connectionClosed() { self.active.decrement(by: 1) }

    /// A connection was closed at once: the listener served its `max-connections`.
    public func connectionRefused() { self.refused.increment() }

    /// A stream or connection on this listener was refused by authentication.
    public func authenticationFailed(_ reason: AuthFailureReason) {
        self.registry.makeCounter(
            MetricName.authFailures,
            labels: [("listener", self.listener), ("reason", reason.rawValue)]
        ).increment()
    }
}
