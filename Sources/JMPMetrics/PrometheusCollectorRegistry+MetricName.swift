import Prometheus

extension MetricName {
    /// The name as swift-prometheus describes it (the name whole, no unit appended).
    var descriptor: MetricNameDescriptor {
        MetricNameDescriptor(metricName: self.name, unitName: "", helpText: self.help)
    }
}

extension PrometheusCollectorRegistry {
    /// The counter `metric` with `labels` (the same object for the same labels).
    func makeCounter(_ metric: MetricName, labels: [(String, String)] = []) -> Counter {
        labels.isEmpty
            ? self.makeCounter(descriptor: metric.descriptor)
            : self.makeCounter(descriptor: metric.descriptor, labels: labels)
    }

    /// The gauge `metric` with `labels` (the same object for the same labels).
    func makeGauge(_ metric: MetricName, labels: [(String, String)] = []) -> Gauge {
        labels.isEmpty
            ? self.makeGauge(descriptor: metric.descriptor)
            : self.makeGauge(descriptor: metric.descriptor, labels: labels)
    }

    /// The duration histogram `metric` with `labels` and `buckets` (the same for every label set).
    func makeDurationHistogram(
        _ metric: MetricName,
        labels: [(String, String)],
        buckets: [Duration]
    ) -> DurationHistogram {
        self.makeDurationHistogram(descriptor: metric.descriptor, labels: labels, buckets: buckets)
    }
}
