import Foundation
import Testing

@testable import JMPBridgeCore
@testable import JMPMetrics

/// The metrics registry on its own: names, labels, the scrape-time counters and the process
/// metrics' parsing; the `metrics:` key. (A real scrape is tested in Tests/Interop/test_metrics.py.)
@Suite("Metrics")
struct MetricsTests {
    /// The sample lines of `name` in a rendering, without HELP and TYPE.
    private func samples(_ metrics: BridgeMetrics, _ name: String) -> [String] {
        String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }.map(String.init).sorted()
    }

    @Test("stream counters carry route and status; data-path handles count into the same series")
    func streamSeries() {
        let metrics = BridgeMetrics(version: "1.2.3")
        let route = metrics.route("echo")
        #expect(metrics.route("echo") === route)
        route.streamOpened()
        route.movedToTarget(100)
        route.movedToTarget(28)
        route.movedFromTarget(7)
        #expect(self.samples(metrics, "jmp_bridge_streams_active") == [#"jmp_bridge_streams_active{route="echo"} 1.0"#])
        route.streamClosed(after: .milliseconds(20))
        metrics.streamEnded(route: "echo", status: "OK")
        metrics.streamEnded(route: nil, status: "UNAUTHENTICATED")
        #expect(
            self.samples(metrics, "jmp_bridge_streams_total") == [
                #"jmp_bridge_streams_total{route="(none)",status="UNAUTHENTICATED"} 1"#,
                #"jmp_bridge_streams_total{route="echo",status="OK"} 1"#,
            ]
        )
        #expect(
            self.samples(metrics, "jmp_bridge_stream_bytes_total") == [
                #"jmp_bridge_stream_bytes_total{route="echo",direction="from_target"} 7"#,
                #"jmp_bridge_stream_bytes_total{route="echo",direction="to_target"} 128"#,
            ]
        )
        #expect(self.samples(metrics, "jmp_bridge_streams_active") == [#"jmp_bridge_streams_active{route="echo"} 0.0"#])
        #expect(
            self.samples(metrics, "jmp_bridge_stream_duration_seconds_count") == [
                #"jmp_bridge_stream_duration_seconds_count{route="echo"} 1"#
            ]
        )
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("# TYPE jmp_bridge_streams_total counter\n"))
        #expect(text.contains("# HELP jmp_bridge_streams_total Router streams ended"))
        #expect(text.contains(#"jmp_bridge_build_info{version="1.2.3"} 1"#))
    }

    @Test("a route no longer configured loses its gauges and keeps its counters")
    func removedRoute() {
        let metrics = BridgeMetrics(version: "test")
        metrics.keepRoutes(["a", "b"])
        metrics.route("b").movedToTarget(5)
        metrics.set(.consoleUp, labels: [("route", "b")], to: 1)
        #expect(self.samples(metrics, "jmp_bridge_streams_active").count == 2)
        metrics.keepRoutes(["a"])
        #expect(self.samples(metrics, "jmp_bridge_streams_active") == [#"jmp_bridge_streams_active{route="a"} 0.0"#])
        #expect(self.samples(metrics, "jmp_bridge_console_up").isEmpty)
        #expect(
            self.samples(metrics, "jmp_bridge_stream_bytes_total").contains(
                #"jmp_bridge_stream_bytes_total{route="b",direction="to_target"} 5"#
            )
        )
    }

    @Test("a gauge set as a whole loses the series that are gone, and keeps the rest")
    func seriesSetAsAWhole() {
        let metrics = BridgeMetrics(version: "test")
        let name = "jmp_bridge_gateway_upstream_connections"
        func upstream(_ address: String, _ state: String) -> [(String, String)] {
            [("upstream", address), ("role", "router"), ("state", state)]
        }
        metrics.setSeries(.gatewayUpstreams, [(upstream("r1:443", "ready"), 1), (upstream("r2:443", "failed"), 1)])
        #expect(
            self.samples(metrics, name) == [
                #"jmp_bridge_gateway_upstream_connections{upstream="r1:443",role="router",state="ready"} 1.0"#,
                #"jmp_bridge_gateway_upstream_connections{upstream="r2:443",role="router",state="failed"} 1.0"#,
            ]
        )
        metrics.setSeries(.gatewayUpstreams, [(upstream("r1:443", "ready"), 0)])
        #expect(
            self.samples(metrics, name) == [
                #"jmp_bridge_gateway_upstream_connections{upstream="r1:443",role="router",state="ready"} 0.0"#
            ]
        )
    }

    @Test("listener handles count connections and authentication failures by reason")
    func listenerSeries() {
        let metrics = BridgeMetrics(version: "test")
        let listener = metrics.listener("tcp:127.0.0.1:0")
        listener.connectionOpened()
        listener.connectionOpened()
        listener.connectionClosed()
        listener.authenticationFailed(.expired)
        listener.authenticationFailed(.expired)
        listener.authenticationFailed(.peer)
        #expect(
            self.samples(metrics, "jmp_bridge_connections_total") == [
                #"jmp_bridge_connections_total{listener="tcp:127.0.0.1:0"} 2"#
            ]
        )
        #expect(
            self.samples(metrics, "jmp_bridge_connections_active") == [
                #"jmp_bridge_connections_active{listener="tcp:127.0.0.1:0"} 1.0"#
            ]
        )
        #expect(
            self.samples(metrics, "jmp_bridge_auth_failures_total") == [
                #"jmp_bridge_auth_failures_total{listener="tcp:127.0.0.1:0",reason="expired"} 2"#,
                #"jmp_bridge_auth_failures_total{listener="tcp:127.0.0.1:0",reason="peer"} 1"#,
            ]
        )
    }

    @Test("a counter read at scrape time follows its source, and starts over when the source does")
    func advance() {
        let metrics = BridgeMetrics(version: "test")
        let labels = [("route", "console")]
        for (total, expected) in [(5, 5), (5, 5), (8, 8), (3, 3), (0, 0), (4, 4)] {
            metrics.advance(.consoleCuts, labels: labels, to: total)
            #expect(
                self.samples(metrics, "jmp_bridge_console_cuts_total") == [
                    #"jmp_bridge_console_cuts_total{route="console"} "# + "\(expected)"
                ]
            )
        }
        metrics.set(.consoleUp, labels: labels, to: 1)
        #expect(self.samples(metrics, "jmp_bridge_console_up") == [#"jmp_bridge_console_up{route="console"} 1.0"#])
    }

    @Test("process metrics: /proc/PID/stat with spaces and parentheses in the command name")
    func procStat() throws {
        var fields = (3...52).map { "\($0 * 10)" }
        fields[0] = "S"
        let line = "4242 (jmp (bridge) x) " + fields.joined(separator: " ") + "\n"
        let stat = try #require(ProcessMetrics.parse(stat: line))
        #expect(stat.userTicks == 140)
        #expect(stat.systemTicks == 150)
        #expect(stat.startTicks == 220)
        #expect(stat.virtualBytes == 230)
        #expect(stat.residentPages == 240)
        #expect(ProcessMetrics.parse(stat: "4242 (short) S 1 2") == nil)
        // This process's own numbers are there and plausible.
        let own = try #require(ProcessMetrics.stat())
        #expect(own.residentPages > 0 && own.virtualBytes > 0)
        let text = String(decoding: BridgeMetrics(version: "test").render(), as: UTF8.self)
        for name in [
            "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
            "process_open_fds", "process_max_fds", "process_start_time_seconds",
        ] {
            #expect(text.contains("\n\(name) ") || text.hasPrefix("\(name) "), "\(name)")
        }
    }

    @Test("metrics: takes tcp:, unix: or systemd:, names line and key when wrong, and needs a restart")
    func configuration() throws {
        let parsed = try ConfigurationLoader.parse(
            yaml: "metrics: tcp:127.0.0.1:9464\nroutes:\n  a: {unix: /a.sock}\n",
            file: file
        )
        #expect(parsed.metrics == .tcp(host: "127.0.0.1", port: 9464))
        let unix = try ConfigurationLoader.parse(yaml: "metrics: unix:/run/m.sock\n", file: file)
        #expect(unix.metrics == .unix(path: "/run/m.sock"))
        expectError(
            "routes:\n  a: {unix: /a.sock}\nmetrics: http://127.0.0.1:9464\n",
            line: 3,
            key: "metrics",
            message: "expected tcp:HOST:PORT, unix:PATH or systemd:NAME"
        )
        var changed = parsed
        changed.metrics = .tcp(host: "127.0.0.1", port: 9465)
        #expect(ReloadPlan(from: parsed, to: changed).needRestart == ["metrics"])
    }
}
