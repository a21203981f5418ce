"""jmp-bridge's Prometheus ``/metrics`` endpoint (issue 20), scraped by a real Prometheus.

    jumpstarter's connect_router_stream ──TLS──▶ jmp-bridge ──▶ echo service (unix)
                                                    ▲
    Debian's prometheus (scrape_interval 1s) ──GET /metrics── tcp:127.0.0.1:PORT (--metrics tcp:127.0.0.1:0)

* The counters Prometheus stored after a known workload equal exactly what the workload did
  (streams by route and status, bytes both ways, histogram counts), read back through its HTTP
  query API, and every expression of the Grafana dashboard is valid PromQL to that Prometheus.
* Every metric of the specification is on a panel of ``packaging/grafana/jmp-bridge.json``.
* Every metric name that ``packaging/grafana/jmp-bridge.json`` uses, and every name of the
  metrics specification (issue 20), is in a real scrape of a bridge that has an echo route with a
  local door, a pty console, a token listener and the exporter gateway, with the specified type
  and label names.
* The specification's details: ``jmp-bridge status`` names the bound address as the ``metrics=``
  item of its first line, and a failed connect is no connect latency.

Prometheus is Debian's package (``scripts/setup`` installs it); a missing binary fails the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import anyio
import grpc
import pytest
from anyio import fail_after
from jumpstarter.config.tls import TLSConfigV1Alpha1

from conftest import BRIDGE_BINARY, REPO, attach_log, call_in_portal, echo
from deployment.process import Process
from test_local_door import connect, receive_all
from test_router_stream import TOKEN, connect_router_stream_echo, open_channel, receive_exactly, router_stream, \
    start_call

TIMEOUT = 30
DASHBOARD = REPO / "packaging" / "grafana" / "jmp-bridge.json"
JOB = "jmp-bridge"

#: The names fixed for issue 20 (the metrics specification) and those added since, by family; histograms are exposed as
#: NAME_bucket, NAME_sum and NAME_count.
SPEC_METRICS = {
    # streams (RouterService/Stream)
    "jmp_bridge_streams_active": "gauge",
    "jmp_bridge_streams_total": "counter",
    "jmp_bridge_stream_bytes_total": "counter",
    "jmp_bridge_stream_duration_seconds": "histogram",
    "jmp_bridge_target_connect_seconds": "histogram",
    "jmp_bridge_auth_failures_total": "counter",
    "jmp_bridge_connections_active": "gauge",
    "jmp_bridge_connections_total": "counter",
    "jmp_bridge_connections_refused_total": "counter",
    "jmp_bridge_tls_certificate_expiry_timestamp_seconds": "gauge",
    "jmp_bridge_tls_ca_certificate_expiry_timestamp_seconds": "gauge",
    # consoles (pty: and serial: routes)
    "jmp_bridge_console_up": "gauge",
    "jmp_bridge_console_attachments": "gauge",
    "jmp_bridge_console_cuts_total": "counter",
    "jmp_bridge_console_scrollback_bytes": "gauge",
    "jmp_bridge_console_reopens_total": "counter",
    "jmp_bridge_console_output_bytes_total": "counter",
    "jmp_bridge_console_input_bytes_total": "counter",
    # local doors
    "jmp_bridge_door_connections_active": "gauge",
    "jmp_bridge_door_connections_total": "counter",
    "jmp_bridge_door_refused_total": "counter",
    "jmp_bridge_door_bytes_total": "counter",
    # the exporter gateway (only when one is configured)
    "jmp_bridge_gateway_relays_active": "gauge",
    "jmp_bridge_gateway_relays_total": "counter",
    "jmp_bridge_gateway_relay_bytes_total": "counter",
    "jmp_bridge_gateway_controller_calls_total": "counter",
    "jmp_bridge_gateway_refused_tokens_total": "counter",
    "jmp_bridge_gateway_upstream_connections": "gauge",
    "jmp_bridge_gateway_upstream_certificate_expiry_timestamp_seconds": "gauge",
    # the process (standard names)
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "jmp_bridge_metrics_connections_refused_total": "counter",
    "jmp_bridge_build_info": "gauge",
}

#: The labels of each family's samples (a histogram's buckets add ``le``); families not named
#: here have none.
SPEC_LABELS = {
    "jmp_bridge_streams_active": {"route"},
    "jmp_bridge_streams_total": {"route", "status"},
    "jmp_bridge_stream_bytes_total": {"route", "direction"},
    "jmp_bridge_stream_duration_seconds": {"route"},
    "jmp_bridge_target_connect_seconds": {"route"},
    "jmp_bridge_auth_failures_total": {"listener", "reason"},
    "jmp_bridge_connections_active": {"listener"},
    "jmp_bridge_connections_total": {"listener"},
    "jmp_bridge_connections_refused_total": {"listener"},
    "jmp_bridge_tls_certificate_expiry_timestamp_seconds": {"listener"},
    "jmp_bridge_tls_ca_certificate_expiry_timestamp_seconds": {"file"},
    **{name: {"route"} for name in SPEC_METRICS if name.startswith(("jmp_bridge_console_", "jmp_bridge_door_"))},
    "jmp_bridge_door_bytes_total": {"route", "direction"},
    "jmp_bridge_gateway_relay_bytes_total": {"direction"},
    "jmp_bridge_gateway_upstream_connections": {"upstream", "role", "state"},
    "jmp_bridge_gateway_upstream_certificate_expiry_timestamp_seconds": {"upstream", "role"},
    "jmp_bridge_build_info": {"version"},
}

#: Exposed only by a bridge with a ``gateway:`` section (the scrape below configures one).
GATEWAY_ONLY = {name for name in SPEC_METRICS if name.startswith("jmp_bridge_gateway_")}


# --------------------------------------------------------------------------------------------
# the exposition and the dashboard


def family(name: str) -> str:
    """The metric family of a sample or PromQL name: a histogram's _bucket/_sum/_count map to
    the histogram (only where the specification names such a histogram)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and SPEC_METRICS.get(base) == "histogram":
            return base
    return name


def parse_exposition(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """The Prometheus text format 0.0.4: ``({family: type}, [(sample name, labels, value)])``."""
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
            assert match, f"not a sample line: {line!r}"
            labels = {m.group(1): re.sub(r"\\(.)", r"\1", m.group(2))
                      for m in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or "")}
            samples.append((match.group(1), labels, float(match.group(3))))
    return types, samples


def dashboard_expressions() -> list[str]:
    """Every PromQL text of the dashboard: panel targets (rows included) and template variables."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(dashboard["panels"])
    for panel in dashboard["panels"]:
        panels += panel.get("panels", [])
    expressions = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        expressions.append(query["query"] if isinstance(query, dict) else query)
    return expressions


def dashboard_metric_names() -> set[str]:
    """The jmp_bridge_* and process_* names the dashboard uses, as families."""
    names = set()
    for expression in dashboard_expressions():
        names |= {family(name) for name in re.findall(r"\b(?:jmp_bridge|process)_[a-zA-Z0-9_]*", expression)}
    return names


def as_promql(expression: str) -> str:
    """A dashboard expression with Grafana's variables as a Prometheus query needs them."""
    return (expression.replace("$__rate_interval", "5s").replace("$instance", ".*").replace("$route", ".*"))


def scrape(address: str) -> str:
    """``GET /metrics`` on the bridge's metrics endpoint (``tcp:HOST:PORT``)."""
    with urllib.request.urlopen(f"http://{address.removeprefix('tcp:')}/metrics", timeout=10) as response:
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        assert content_type.startswith("text/plain") and "version=0.0.4" in content_type, content_type
        return response.read().decode()


def metrics_address(bridge) -> str:
    """The bound metrics address, ``tcp:127.0.0.1:PORT``, from the ``metrics endpoint bound`` log
    line (``jmp-bridge status`` has it too: :func:`test_status_names_the_bound_metrics_address`)."""
    [line] = bridge.wait_for_line(r"metrics endpoint bound")
    match = re.search(r"\baddress=(tcp:127\.0\.0\.1:(\d+))(?:\s|$)", line)
    assert match and match.group(2) != "0", f"no bound tcp address in: {line}"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, what: str, timeout: float = TIMEOUT, interval: float = 0.1):
    """Polls ``predicate`` until it returns something true, which is returned; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Prometheus


PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus(Process):
    """Debian's prometheus on 127.0.0.1, scraping ``targets`` every second as job ``jmp-bridge``."""

    def __init__(self, directory: Path, targets: list[str]):
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("prometheus", [
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ], cwd=directory)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with status {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                reply = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422 carry the error in the same JSON shape
            reply = json.load(error)
        assert reply.get("status") == "success", f"prometheus {path} {params}: {reply}"
        return reply["data"]

    def query(self, expression: str) -> list[dict]:
        """An instant query (``/api/v1/query``) at the current time: the result vector."""
        data = self.api("query", query=expression)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expression: str) -> float | None:
        """The single value of an instant query, or None for an empty result."""
        result = self.query(expression)
        assert len(result) <= 1, f"{expression}: more than one series: {result}"
        return float(result[0]["value"][1]) if result else None

    def target(self) -> dict | None:
        targets = self.api("targets", state="active")["activeTargets"]
        return targets[0] if targets else None


@pytest.fixture
def start_prometheus(request, sockdir):
    """``start_prometheus(targets) -> Prometheus``, ready to answer queries; stopped at teardown."""
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        if not os.access(PROMETHEUS, os.X_OK):
            pytest.fail("Debian's prometheus is not installed (no `prometheus` on PATH): run scripts/setup, "
                        "or apt-get install prometheus")
        prometheus = Prometheus(sockdir / f"prometheus-{len(started)}", targets)
        started.append(prometheus)
        attach_log(request, prometheus)
        wait_until(prometheus.ready, f"prometheus to be ready on {prometheus.url}")
        return prometheus

    yield start
    for prometheus in started:
        prometheus.stop()


# --------------------------------------------------------------------------------------------
# the endpoint


def test_status_names_the_bound_metrics_address(start_bridge, unix_server):
    """Programs learn the real port of ``--metrics tcp:127.0.0.1:0`` from ``jmp-bridge status``:
    the item ``metrics=tcp:127.0.0.1:PORT`` of the first (``bridge=``) line, the address the log
    names, which serves."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path}, extra_args=["--metrics", "tcp:127.0.0.1:0"])
    result = subprocess.run([str(BRIDGE_BINARY), "status", "--control", str(bridge.control)],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("bridge=jmp-bridge ") and f" metrics={metrics_address(bridge)}" in f" {first} ", first
    assert "jmp_bridge_build_info" in scrape(metrics_address(bridge))


def test_connect_latency_counts_only_connected_targets(start_bridge, unix_server, tls, sockdir, event_loop_portal):
    """``jmp_bridge_target_connect_seconds`` is "stream admitted → target connected": a stream
    whose target socket is missing fails (UNAVAILABLE, counted in streams_total) and adds nothing
    to it, so fast failures do not pull the latency quantiles down."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path, "gone": sockdir / "gone.sock"}, default_route="echo",
                          extra_args=["--metrics", "tcp:127.0.0.1:0"])
    address = metrics_address(bridge)

    async def workload():
        with fail_after(TIMEOUT):
            await connect_router_stream_echo(bridge.endpoint, TOKEN, TLSConfigV1Alpha1(ca=tls.ca_base64), b"x\n")
            async with open_channel(bridge, tls) as channel:
                for _ in range(3):
                    assert await start_call(channel, "gone").code() == grpc.StatusCode.UNAVAILABLE

    call_in_portal(event_loop_portal, workload)
    bridge.stream_lines(count=4)
    _, samples = parse_exposition(scrape(address))

    def total(name, **labels):
        return sum(value for sample, have, value in samples
                   if sample == name and all(have.get(k) == v for k, v in labels.items()))
    assert total("jmp_bridge_streams_total", route="gone", status="UNAVAILABLE") == 3
    assert total("jmp_bridge_target_connect_seconds_count", route="echo") == 1
    assert total("jmp_bridge_target_connect_seconds_count", route="gone") == 0


# --------------------------------------------------------------------------------------------
# counters through Prometheus


STREAMS = 6
STREAM_BYTES = 300_007  # not a multiple of any frame or buffer size


async def echo_workload(bridge, tls) -> None:
    """STREAMS concurrent echo streams of STREAM_BYTES each (jumpstarter's connect_router_stream,
    the default route), then one stream to a route that does not exist (NOT_FOUND)."""
    tls_config = TLSConfigV1Alpha1(ca=tls.ca_base64)
    with fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            for i in range(STREAMS):
                message = bytes([i + 1]) * STREAM_BYTES
                tg.start_soon(connect_router_stream_echo, bridge.endpoint, TOKEN, tls_config, message)
        async with open_channel(bridge, tls) as channel:
            call = start_call(channel, "nosuch")
            assert await call.code() == grpc.StatusCode.NOT_FOUND


async def test_prometheus_stores_exactly_what_the_workload_did(start_bridge, unix_server, tls, start_prometheus):
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path}, extra_args=["--metrics", "tcp:127.0.0.1:0"])
    address = metrics_address(bridge)
    prometheus = start_prometheus([address.removeprefix("tcp:")])

    await echo_workload(bridge, tls)
    bridge.stream_lines(count=STREAMS + 1)  # every stream has ended (its log line)
    # ... and the bridge's own gauge says so, before the moment the next scrape must follow.
    wait_until(lambda: sum(value for name, _, value in parse_exposition(scrape(address))[1]
                           if name == "jmp_bridge_streams_active") == 0, "jmp_bridge_streams_active to be 0")
    done = time.time()

    # `up` is stored with the scrape's samples, stamped with the scrape's start: once its
    # timestamp is after the workload, so are the counters Prometheus answers with.
    def scraped_after_workload():
        stamp = prometheus.value(f'timestamp(up{{job="{JOB}"}})')
        return stamp is not None and stamp > done
    wait_until(scraped_after_workload, "a Prometheus scrape of jmp-bridge after the workload")

    health = prometheus.target()
    assert health and health["health"] == "up" and health["lastError"] == "", health
    assert prometheus.value(f'up{{job="{JOB}"}}') == 1

    expected = {
        'sum(jmp_bridge_streams_total{route="echo",status="OK"})': STREAMS,
        'sum(jmp_bridge_streams_total{route="echo",status!="OK"})': None,  # no such series
        'sum(jmp_bridge_streams_total{route="(none)",status="NOT_FOUND"})': 1,
        'sum(jmp_bridge_stream_bytes_total{route="echo",direction="to_target"})': STREAMS * STREAM_BYTES,
        'sum(jmp_bridge_stream_bytes_total{route="echo",direction="from_target"})': STREAMS * STREAM_BYTES,
        'sum(jmp_bridge_streams_active{route="echo"})': 0,
        'sum(jmp_bridge_stream_duration_seconds_count{route="echo"})': STREAMS,
        'sum(jmp_bridge_target_connect_seconds_count{route="echo"})': STREAMS,
        'sum(jmp_bridge_target_connect_seconds_bucket{route="echo",le="+Inf"})': STREAMS,
    }
    actual = {expression: prometheus.value(expression) for expression in expected}
    assert actual == expected

    # The dashboard's expressions are valid PromQL to this Prometheus and, for the main panels
    # of a bridge with an echo route, find series.
    for expression in dashboard_expressions():
        if not expression.startswith("label_values("):
            prometheus.query(as_promql(expression))  # fails on status "error"
    for expression in ["sum by (route) (jmp_bridge_streams_active{route=~\".*\"})",
                       "jmp_bridge_build_info", "process_resident_memory_bytes"]:
        assert prometheus.query(expression), expression
    labels = prometheus.api("label/route/values", **{"match[]": "jmp_bridge_streams_total"})
    assert set(labels) == {"echo", "(none)"}, labels


# --------------------------------------------------------------------------------------------
# metric names in a real scrape


def full_config(tls, sockdir: Path, echo_path: Path, controller_port: int) -> str:
    """A bridge with every kind of metric: an echo route with a local door, a pty console, a
    second listener that requires router tokens, the exporter gateway (its controller a TLS gRPC
    server on ``controller_port`` that serves no method), and `metrics:`."""
    key_file = sockdir / "router.key"
    key_file.write_text("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n")
    return "\n".join([
        "jwt:",
        f"  key-file: {key_file}",
        "listen:",
        "  - address: tcp:127.0.0.1:0",
        f"    tls: {{cert: {tls.cert}, key: {tls.key}}}",
        "    auth: none",
        "    allow-unauthenticated: true",
        f"  - address: unix:{sockdir / 'jwt.sock'}",
        "default-route: echo",
        "routes:",
        f"  echo: {{unix: {echo_path}, local: {{address: 'unix:{sockdir / 'echo.door'}'}}}}",
        f"  console: {{pty: {{link: {sockdir / 'console'}}}}}",
        "gateway:",
        # Not 127.0.0.1:0, which the first listener has.
        f"  listen: {{address: 'tcp:127.0.0.2:0', tls: {{cert: '{tls.cert}', key: '{tls.key}'}}}}",
        f"  controller: {{endpoint: '127.0.0.1:{controller_port}', ca: '{tls.cert}'}}",
        "metrics: tcp:127.0.0.1:0",
    ]) + "\n"


@pytest.fixture
def full_scrape(start_bridge, unix_server, tls, sockdir, event_loop_portal):
    """A real scrape of the bridge of :func:`full_config` after what makes each family appear (a
    labelled family has no lines before its first child): an echo stream, a console stream with
    output, a door connection, a stream without a token on the token listener and a controller
    call through the gateway. ``({family: type}, [(sample name, labels, value)])``."""
    async def start_controller():
        # Serves no method: the gateway's call is UNIMPLEMENTED, its certificate is seen.
        server = grpc.aio.server()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(tls.key.read_bytes(), tls.cert_pem)]))
        await server.start()
        return server, port

    controller, controller_port = event_loop_portal.call(start_controller)
    try:
        yield full_scrape_of(start_bridge, unix_server, tls, sockdir, event_loop_portal, controller_port)
    finally:
        event_loop_portal.call(controller.stop, None)


def full_scrape_of(start_bridge, unix_server, tls, sockdir, event_loop_portal, controller_port: int):
    target = unix_server("echo.sock", echo)
    bridge = start_bridge(config=full_config(tls, sockdir, target.path, controller_port))
    address = metrics_address(bridge)
    gateway = next(item["gateway"] for item in bridge.status() if "gateway" in item).removeprefix("tcp:")

    async def workload():
        with fail_after(TIMEOUT):
            await connect_router_stream_echo(bridge.endpoint, TOKEN, TLSConfigV1Alpha1(ca=tls.ca_base64), b"names\n")
            device = os.open(sockdir / "console", os.O_RDWR | os.O_NOCTTY)
            try:
                async with router_stream(bridge, tls, "console") as (remote, _call):
                    os.write(device, b"login: ")
                    assert await receive_exactly(remote, 7) == b"login: "
            finally:
                os.close(device)
            async with grpc.aio.insecure_channel(f"unix:{sockdir / 'jwt.sock'}") as channel:
                call = start_call(channel, "echo")
                assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
            # The gateway passes every call but Stream to the controller, which serves none.
            options = [("grpc.ssl_target_name_override", "localhost")]
            async with grpc.aio.secure_channel(gateway, grpc.ssl_channel_credentials(tls.cert_pem), options) as channel:
                call = channel.unary_unary("/jumpstarter.v1.ControllerService/GetStatus")(b"")
                assert await call.code() == grpc.StatusCode.UNIMPLEMENTED

    call_in_portal(event_loop_portal, workload)
    with connect(sockdir / "echo.door") as door:
        door.sendall(b"door\n")
        door.shutdown(socket.SHUT_WR)
        assert receive_all(door) == b"door\n"
    return parse_exposition(scrape(address))


def test_dashboard_uses_only_specified_metric_names():
    unknown = dashboard_metric_names() - set(SPEC_METRICS)
    assert not unknown, f"{DASHBOARD.name} uses metric names that are not in the specification: {sorted(unknown)}"
    assert dashboard_metric_names() >= {"jmp_bridge_streams_total", "jmp_bridge_stream_bytes_total",
                                        "jmp_bridge_target_connect_seconds", "process_cpu_seconds_total"}


def test_every_specified_metric_is_on_the_dashboard():
    """What the bridge exports, an operator finds on some panel: a metric added without one
    (the door's bytes, the metrics endpoint's refusals were) fails here."""
    missing = set(SPEC_METRICS) - dashboard_metric_names()
    assert not missing, f"{DASHBOARD.name} shows no panel with: {sorted(missing)}"


def test_every_dashboard_metric_is_in_a_real_scrape(full_scrape):
    types, _ = full_scrape
    missing = dashboard_metric_names() - set(types)
    assert not missing, f"{DASHBOARD.name} uses metrics that jmp-bridge does not expose: {sorted(missing)}"


def test_every_specified_metric_is_exposed_with_its_type(full_scrape):
    types, samples = full_scrape
    with_samples = {family(name) for name, _, _ in samples}
    missing = sorted(set(SPEC_METRICS) - set(types))
    assert not missing, f"specified but not exposed (gateway-only: {sorted(GATEWAY_ONLY & set(missing))}): {missing}"
    wrong = {name: (types[name], kind) for name, kind in SPEC_METRICS.items() if types[name] != kind}
    assert not wrong, f"exposed with another type (exposed, specified): {wrong}"
    # Unlabelled families and those of configured routes have samples already.
    for name in ("jmp_bridge_build_info", "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                 "jmp_bridge_streams_total", "jmp_bridge_stream_bytes_total", "jmp_bridge_console_up",
                 "jmp_bridge_console_output_bytes_total", "jmp_bridge_door_connections_total",
                 "jmp_bridge_auth_failures_total", "jmp_bridge_gateway_relays_active",
                 "jmp_bridge_gateway_upstream_connections", "jmp_bridge_tls_certificate_expiry_timestamp_seconds",
                 "jmp_bridge_gateway_upstream_certificate_expiry_timestamp_seconds",
                 "jmp_bridge_tls_ca_certificate_expiry_timestamp_seconds"):
        assert name in with_samples, f"{name}: no sample"


def test_every_specified_metric_has_its_labels(full_scrape):
    """The label names of every sample are the specified ones, and the bounded values are."""
    _, samples = full_scrape
    wrong = {}
    for name, labels, _ in samples:
        base = family(name)
        if base not in SPEC_METRICS:
            continue
        expected = SPEC_LABELS.get(base, set()) | ({"le"} if name.endswith("_bucket") else set())
        if set(labels) != expected:
            wrong[base] = (sorted(labels), sorted(expected))
    assert not wrong, f"labels (exposed, specified): {wrong}"
    values = {}
    for name, labels, _ in samples:
        for label, value in labels.items():
            values.setdefault((family(name), label), set()).add(value)
    assert values[("jmp_bridge_stream_bytes_total", "direction")] == {"to_target", "from_target"}
    assert values[("jmp_bridge_gateway_relay_bytes_total", "direction")] == {"to_router", "from_router"}
    assert values[("jmp_bridge_streams_total", "route")] <= {"echo", "console", "(none)"}
    assert {"OK", "UNAUTHENTICATED"} <= values[("jmp_bridge_streams_total", "status")] <= \
        {code.name for code in grpc.StatusCode}
    assert values[("jmp_bridge_auth_failures_total", "reason")] == {"missing"}
    assert values[("jmp_bridge_connections_total", "listener")] >= {"tcp:127.0.0.1:0"}
