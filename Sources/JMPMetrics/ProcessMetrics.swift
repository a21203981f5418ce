import Prometheus

#if canImport(Glibc)
    import Glibc
#endif

/// The standard `process_*` metrics of Prometheus' client libraries, read from `/proc/self` at
/// each scrape (procfs answers from memory: no disk I/O on the event loop).
struct ProcessMetrics: Sendable {
    private let rss: Gauge
    private let virtual: Gauge
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let start: Gauge
    private let ticksPerSecond: Double
    private let pageSize: Int

    init(registry: PrometheusCollectorRegistry) {
        self.rss = registry.makeGauge(MetricName.processRSS)
        self.virtual = registry.makeGauge(MetricName.processVirtual)
        self.openFDs = registry.makeGauge(MetricName.processOpenFDs)
        self.maxFDs = registry.makeGauge(MetricName.processMaxFDs)
        self.start = registry.makeGauge(MetricName.processStart)
        self.ticksPerSecond = Double(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        self.pageSize = max(sysconf(Int32(_SC_PAGESIZE)), 1)
        if let stat = Self.stat(), let boot = Self.bootTime() {
            self.start.set(to: boot + Double(stat.startTicks) / self.ticksPerSecond)
        }
    }

    /// Reads the process's numbers now.
    func update(_ metrics: BridgeMetrics) {
        if let stat = Self.stat() {
            metrics.advance(
                MetricName.processCPU,
                labels: [],
                to: Double(stat.userTicks + stat.systemTicks) / self.ticksPerSecond,
                integral: false
            )
            self.virtual.set(Int64(stat.virtualBytes))
            self.rss.set(Int64(stat.residentPages * self.pageSize))
        }
        self.openFDs.set(Int64(Self.countOpenDescriptors()))
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            self.maxFDs.set(Int64(clamping: limit.rlim_cur))
        }
    }

    /// The fields of `/proc/self/stat` used here (proc(5)).
    struct Stat {
        var userTicks: Int
        var systemTicks: Int
        var startTicks: Int
        var virtualBytes: Int
        var residentPages: Int
    }

    /// Reads `/proc/self/stat`.
    static func stat() -> Stat? {
        Self.contents(of: "/proc/self/stat").flatMap(Self.parse(stat:))
    }

    /// Parses a `/proc/PID/stat` line: the fields after the command name, which is in
    /// parentheses and may itself hold spaces and parentheses (so the text is split after its
    /// last `)`).
    static func parse(stat text: String) -> Stat? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        // Fields from 3 (state) on; field N is at index N - 3.
        let fields = text[text.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Int? {
            let index = number - 3
            guard fields.indices.contains(index) else { return nil }
            return Int(fields[index].trimmingCharacters(in: "\n"))
        }
        guard let user = field(14), let system = field(15), let start = field(22), let virtual = field(23),
            let resident = field(24)
        else { return nil }
        return Stat(
            userTicks: user,
            systemTicks: system,
            startTicks: start,
            virtualBytes: virtual,
            residentPages: resident
        )
    }

    /// `btime` of `/proc/stat`: when the system booted, in seconds since the epoch.
    static func bootTime() -> Double? {
        guard let text = Self.contents(of: "/proc/stat") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: " "))
        }
        return nil
    }

    /// The entries of `/proc/self/fd`, less the one the listing itself holds open.
    static func countOpenDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return max(count - 1, 0)
    }

    /// A small procfs file's text.
    private static func contents(of path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += chunk[..<count]
            guard bytes.count < 1 << 20 else { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in character: Character) -> Substring {
        var text = self
        while text.first == character { text = text.dropFirst() }
        while text.last == character { text = text.dropLast() }
        return text
    }
}
