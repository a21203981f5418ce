import Prometheus
import Synchronization

/// The metrics of one bridge, kept in a swift-prometheus registry and rendered in the Prometheus
/// text format by ``render()``. Two kinds of updates feed it:
///
/// - the data path counts as things happen, through handles looked up once per stream or
///   connection (``route(_:)``, ``listener(_:)``): one relaxed atomic operation per update;
/// - facts other parts already keep (consoles, doors, the gateway) are read when Prometheus
///   scrapes and applied with ``set(_:labels:to:)`` and ``advance(_:labels:to:)``.
///
/// Label values are bounded: route names and listener addresses come from the configuration,
/// statuses and reasons from fixed sets, never from what a client sent.
public final class BridgeMetrics: Sendable {
    /// The `route` label of a stream refused before its route was known.
    public static let noRoute = "(none)"

    /// The registry; libraries reporting through swift-metrics can share it
    /// (`PrometheusMetricsFactory(registry:)`).
    public let registry: PrometheusCollectorRegistry
    private let routes = Mutex<[String: RouteMetrics]>([:])
    private let listeners = Mutex<[String: ListenerMetrics]>([:])
    /// The last total each ``advance(_:labels:to:)`` counter was brought to.
    private let totals = Mutex<[String: Double]>([:])
    /// The series each ``setSeries(_:_:)`` gauge has, by metric name and series key.
    private let series = Mutex<[String: [String: [(String, String)]]]>([:])
    private let process: ProcessMetrics
    private let endpointRefusals: Counter

    /// An empty registry with `jmp_bridge_build_info{version}`, the process metrics and the
    /// endpoint's own refusals (at zero).
    public init(version: String) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        registry.makeGauge(MetricName.buildInfo, labels: [("version", version)]).set(Int64(1))
        self.process = ProcessMetrics(registry: registry)
        self.endpointRefusals = registry.makeCounter(MetricName.metricsRefused)
    }

    /// The metrics endpoint turned a connection away: it served its connection limit.
    public func endpointRefused() { self.endpointRefusals.increment() }

    /// The metrics of route `name` (created at first use).
    public func route(_ name: String) -> RouteMetrics {
        self.routes.withLock { routes in
            if let known = routes[name] { return known }
            let made = RouteMetrics(route: name, registry: self.registry)
            routes[name] = made
            return made
        }
    }

    /// The routes configured now: each has its series (at zero until used), and the gauges of
    /// routes no longer configured are removed, so that a removed console is not shown "up"
    /// forever. Their counters stay, as Prometheus expects of counters.
    public func keepRoutes(_ names: Set<String>) {
        let gone = self.routes.withLock { routes in
            let gone = routes.keys.filter { !names.contains($0) }
            for name in gone { routes[name] = nil }
            for name in names where routes[name] == nil {
                routes[name] = RouteMetrics(route: name, registry: self.registry)
            }
            return gone
        }
        for name in gone {
            for metric in [MetricName.streamsActive, .consoleUp, .consoleAttachments, .consoleScrollback, .doorActive] {
                self.registry.unregisterGauge(self.registry.makeGauge(metric, labels: [("route", name)]))
            }
        }
    }

    /// The metrics of the listener configured as `address` (created at first use).
    public func listener(_ address: String) -> ListenerMetrics {
        self.listeners.withLock { listeners in
            if let known = listeners[address] { return known }
            let made = ListenerMetrics(listener: address, registry: self.registry)
            listeners[address] = made
            return made
        }
    }

    /// A stream ended with the gRPC status named `status` (`OK`, `UNAVAILABLE`, …); `route` is
    /// nil when it was refused before its route was known.
    public func streamEnded(route: String?, status: String) {
        self.registry.makeCounter(
            MetricName.streamsTotal,
            labels: [("route", route ?? Self.noRoute), ("status", status)]
        ).increment()
    }

    /// Sets the gauge `metric` to a value read at scrape time.
    public func set(_ metric: MetricName, labels: [(String, String)] = [], to value: Int) {
        self.registry.makeGauge(metric, labels: labels).set(Int64(value))
    }

    /// Sets every series of the gauge `metric` to a value read at scrape time, and removes the
    /// series an earlier call set that are not among them now (what they described is gone, as
    /// a forgotten upstream connection): a gauge is not left at its last value for good.
    public func setSeries(_ metric: MetricName, _ values: [(labels: [(String, String)], value: Int)]) {
        let keyed = values.map { (key: $0.labels.map { "\($0.0)=\($0.1)" }.joined(separator: "\u{0}"), value: $0) }
        let gone = self.series.withLock { known -> [[(String, String)]] in
            var current = known[metric.name] ?? [:]
            let now = Set(keyed.map(\.key))
            let gone = current.filter { !now.contains($0.key) }
            for key in gone.keys { current[key] = nil }
            for item in keyed { current[item.key] = item.value.labels }
            known[metric.name] = current
            return Array(gone.values)
        }
        for labels in gone { self.registry.unregisterGauge(self.registry.makeGauge(metric, labels: labels)) }
        for item in values { self.set(metric, labels: item.labels, to: item.value) }
    }

    /// Brings the counter `metric` up to `total`, a count its source keeps. A total lower than
    /// the last one means the source started over (a console reopened by a reload, a door
    /// removed and added again): the counter starts over too, which Prometheus' `rate()`
    /// reads as a counter reset.
    public func advance(_ metric: MetricName, labels: [(String, String)] = [], to total: Int) {
        self.advance(metric, labels: labels, to: Double(total), integral: true)
    }

    func advance(_ metric: MetricName, labels: [(String, String)], to total: Double, integral: Bool) {
        let counter = self.registry.makeCounter(metric, labels: labels)
        let key = metric.name + labels.map { "\u{0}\($0.0)=\($0.1)" }.joined()
        self.totals.withLock { totals in
            let last = totals[key] ?? 0
            var step = total - last
            if step < 0 {
                counter.reset()
                step = total
            }
            if step > 0 {
                if integral { counter.increment(by: Int64(step)) } else { counter.increment(by: step) }
            }
            totals[key] = total
        }
    }

    /// The Prometheus text format (version 0.0.4) of every metric, the process metrics read now.
    public func render() -> [UInt8] {
        self.process.update(self)
        return self.registry.emitToBuffer()
    }
}
