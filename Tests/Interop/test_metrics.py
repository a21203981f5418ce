"""The Prometheus metrics endpoint (``metrics:`` / ``--metrics``): a real scrape after a known
workload, parsed with the ``prometheus_client`` text parser from PyPI, every counter exact; the
endpoint's answers to other paths, methods and malformed requests; a ``unix:`` endpoint.
(Debian's real Prometheus server scraping the bridge is in ``test_metrics_prometheus.py``, a
``systemd:`` endpoint in ``test_systemd.py``.)"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import threading
import time

import grpc
import pytest
from anyio import fail_after, to_thread
from jumpstarter.config.tls import TLSConfigV1Alpha1
from prometheus_client.parser import text_string_to_metric_families

from conftest import BRIDGE_BINARY, echo
from test_console import console_program
from test_jwt import ROUTER_KEY, router_token
from test_router_stream import TIMEOUT, connect_router_stream_echo, credentials, start_call

STREAMS = 3
PAYLOAD = 100_000
LAG_LIMIT = 65536
CONSOLE_OUTPUT = 1_000_000


def scrape(address: str, path: str = "/metrics", method: str = "GET", body: bytes | None = None):
    """One HTTP request to the endpoint at ``tcp:HOST:PORT`` or ``unix:PATH``; (status, headers, body)."""
    if address.startswith("unix:"):
        connection = UnixHTTPConnection(address.removeprefix("unix:"))
    else:
        host, port = address.removeprefix("tcp:").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=TIMEOUT)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self.path)


def samples(text: str) -> dict[tuple, float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(table: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in table, f"no sample {name}{labels} in the scrape; have {sorted(k for k in table if k[0] == name)}"
    return table[key]


def metrics_config(tls, sockdir, echo_path, console_link) -> str:
    key_file = sockdir / "router.key"
    key_file.write_bytes(ROUTER_KEY + b"\n")
    return "\n".join([
        "jwt:",
        f"  key-file: {key_file}",
        "listen:",
        "  - address: tcp:127.0.0.1:0",
        f"    tls: {{cert: {tls.cert}, key: {tls.key}}}",
        "metrics: tcp:127.0.0.1:0",
        f"control: unix:{sockdir}/control.sock",
        "default-route: echo",
        "routes:",
        f"  echo: {{unix: {echo_path}}}",
        f"  console: {{pty: {{link: {console_link}, lag-limit: {LAG_LIMIT}}}}}",
    ]) + "\n"


def route_line(bridge, name: str) -> dict[str, str]:
    [line] = [item for item in bridge.status() if item.get("route") == name]
    return line


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    """Polls ``condition`` (a state read through the bridge's own status) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def test_scrape_after_a_known_workload_is_exact(start_bridge, unix_server, tls, sockdir):
    """N streams of M bytes each way, one refused token and one console attachment cut for
    lagging: every counter of the scrape says exactly that."""
    target = unix_server("echo.sock", echo)
    link = sockdir / "console"
    bridge = start_bridge(config=metrics_config(tls, sockdir, target.path, link))
    address = bridge.status()[0]["metrics"]
    assert address.startswith("tcp:127.0.0.1:") and not address.endswith(":0"), address
    listener = "tcp:127.0.0.1:0"  # the label is the configured address

    before = samples(scrape(address)[2].decode())
    # Configured routes have their series from the start, at zero.
    assert value(before, "jmp_bridge_stream_bytes_total", route="echo", direction="to_target") == 0
    assert value(before, "jmp_bridge_streams_active", route="console") == 0

    message = bytes(range(256)) * (PAYLOAD // 256) + b"x" * (PAYLOAD % 256)
    with fail_after(TIMEOUT):
        for _ in range(STREAMS):
            await connect_router_stream_echo(
                bridge.endpoint, router_token(), TLSConfigV1Alpha1(ca=tls.ca_base64), message
            )
        wrong = router_token(key=b"another-secret-another-secret-another-secret")
        opts = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.secure_channel(bridge.endpoint, credentials(tls, wrong), options=opts) as channel:
            assert await start_call(channel).code() == grpc.StatusCode.UNAUTHENTICATED
    bridge.stream_lines(count=STREAMS + 1)

    # A console attachment that never reads: `attach` writing into a pipe nobody empties.
    attach = subprocess.Popen([str(BRIDGE_BINARY), "attach", "console", "--control", str(sockdir / "control.sock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: route_line(bridge, "console")["attachments"] == "1", "the attachment")
        with console_program(link) as device:
            os.set_blocking(device, True)
            # No newline: the pty's output processing would turn it into two bytes.
            await to_thread.run_sync(os.write, device, b"y" * CONSOLE_OUTPUT)
            bridge.wait_for_line(r"console attachment cut: it lagged too far behind")
            wait_for(lambda: route_line(bridge, "console")["output-bytes"] == str(CONSOLE_OUTPUT), "the output")
            after = samples(scrape(address)[2].decode())
    finally:
        attach.kill()
        attach.wait(timeout=TIMEOUT)

    assert value(after, "jmp_bridge_streams_total", route="echo", status="OK") == STREAMS
    assert value(after, "jmp_bridge_streams_total", route="(none)", status="UNAUTHENTICATED") == 1
    assert not [k for k in after if k[0] == "jmp_bridge_streams_total"
                and dict(k[1]).get("status") not in ("OK", "UNAUTHENTICATED")], after
    assert value(after, "jmp_bridge_streams_active", route="echo") == 0
    assert value(after, "jmp_bridge_stream_bytes_total", route="echo", direction="to_target") == STREAMS * PAYLOAD
    assert value(after, "jmp_bridge_stream_bytes_total", route="echo", direction="from_target") == STREAMS * PAYLOAD
    assert value(after, "jmp_bridge_stream_duration_seconds_count", route="echo") == STREAMS
    assert value(after, "jmp_bridge_stream_duration_seconds_bucket", route="echo", le="+Inf") == STREAMS
    assert value(after, "jmp_bridge_target_connect_seconds_count", route="echo") == STREAMS
    assert value(after, "jmp_bridge_auth_failures_total", listener=listener, reason="signature") == 1
    assert [k for k in after if k[0] == "jmp_bridge_auth_failures_total"] == [
        ("jmp_bridge_auth_failures_total", (("listener", listener), ("reason", "signature")))]
    # connect_router_stream and the refused call each open their own connection.
    assert value(after, "jmp_bridge_connections_total", listener=listener) == STREAMS + 1
    assert value(after, "jmp_bridge_console_cuts_total", route="console") == 1
    assert value(after, "jmp_bridge_console_up", route="console") == 1
    assert value(after, "jmp_bridge_console_output_bytes_total", route="console") == CONSOLE_OUTPUT
    assert value(after, "jmp_bridge_console_reopens_total", route="console") == 0
    scrollback = value(after, "jmp_bridge_console_scrollback_bytes", route="console")
    assert 0 < scrollback <= CONSOLE_OUTPUT
    assert value(after, "jmp_bridge_build_info", version=subprocess.run(
        [str(BRIDGE_BINARY), "--version"], capture_output=True, text=True).stdout.strip()) == 1
    assert value(after, "process_open_fds") > 10
    assert value(after, "process_max_fds") >= value(after, "process_open_fds")
    assert value(after, "process_resident_memory_bytes") > 1 << 20
    assert value(after, "process_cpu_seconds_total") > 0
    assert abs(value(after, "process_start_time_seconds") - time.time()) < 3600


def test_endpoint_refuses_other_paths_and_methods(start_bridge, unix_server, tls):
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path}, extra_args=["--metrics", "tcp:127.0.0.1:0"])
    address = bridge.status()[0]["metrics"]

    status, headers, body = scrape(address, "/metrics?name[]=x")
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"jmp_bridge_streams_active" in body
    status, headers, body = scrape(address, method="HEAD")
    assert (status, body) == (200, b"") and int(headers["Content-Length"]) > 0
    for path in ("/", "/metrics/", "/metricsx", "/api/v1/query"):
        status, _, body = scrape(address, path)
        assert status == 404 and b"/metrics" in body, (path, status, body)
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, body = scrape(address, method=method, body=b"x" * 100_000)
        assert status == 405 and headers["Allow"] == "GET, HEAD", (method, status, headers)
    # Not HTTP at all: 400, and the bridge serves on.
    host, port = address.removeprefix("tcp:").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
        raw.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        assert raw.recv(64).startswith(b"HTTP/1.1 400")
    assert scrape(address)[0] == 200
    assert "refused" not in bridge.log()


def test_endpoint_serves_16_connections_and_answers_the_next_503(start_bridge, unix_server):
    """The endpoint's connection limit, in the real binary: 16 kept-alive scrapers are served, a
    17th connection is answered 503 with the reason and closed (and logged), the 16 go on, and a
    place freed is taken again. (The idle timeout is tested in MetricsEndpointTests.swift.)"""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path}, extra_args=["--metrics", "tcp:127.0.0.1:0"])
    host, port = bridge.status()[0]["metrics"].removeprefix("tcp:").rsplit(":", 1)
    scrapers = [http.client.HTTPConnection(host, int(port), timeout=TIMEOUT) for _ in range(16)]
    try:
        for connection in scrapers:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            assert response.status == 200 and b"jmp_bridge_streams_active" in response.read()

        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
            raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
        assert answer.endswith(b"\r\n\r\njmp-bridge metrics: too many connections (16 open), try again later\n")
        bridge.wait_for_line("metrics connection refused: too many connections")

        for connection in scrapers:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
            assert "jmp_bridge_streams_active" in text
            # The refusal is counted, not only logged.
            assert value(samples(text), "jmp_bridge_metrics_connections_refused_total") == 1

        # One scraper leaves; once the bridge has seen it go, a new one is served.
        scrapers.pop().close()
        deadline = time.monotonic() + TIMEOUT
        while (status := scrape(f"tcp:{host}:{port}")[0]) == 503:
            assert time.monotonic() < deadline, "a freed place was not taken again"
        assert status == 200
    finally:
        for connection in scrapers:
            connection.close()


def test_unix_endpoint_and_bad_address(start_bridge, unix_server, tls, sockdir):
    target = unix_server("echo.sock", echo)
    path = sockdir / "metrics.sock"
    bridge = start_bridge({"echo": target.path}, extra_args=["--metrics", f"unix:{path}"])
    assert bridge.status()[0]["metrics"] == f"unix:{path}"
    assert os.stat(path).st_mode & 0o777 == 0o660
    status, _, body = scrape(f"unix:{path}")
    assert status == 200 and b"process_open_fds" in body

    result = subprocess.run([str(BRIDGE_BINARY), "serve", "--listen", f"unix:{sockdir}/x.sock",
                             "--route", f"echo=unix:{target.path}", "--metrics", "http://0.0.0.0:9100"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0
    assert "--metrics" in result.stderr and "expected tcp:HOST:PORT, unix:PATH or systemd:NAME" in result.stderr

    # `check` names the endpoint, or the line and key of a bad one.
    good = sockdir / "good.yaml"
    good.write_text(f"listen: [{{address: 'unix:{sockdir}/g.sock'}}]\nroutes:\n  echo: {{unix: {target.path}}}\n"
                    "metrics: tcp:127.0.0.1:9464\n")
    result = subprocess.run([str(BRIDGE_BINARY), "check", "--config", str(good)], capture_output=True, text=True)
    assert result.returncode == 0 and "metrics on tcp:127.0.0.1:9464" in result.stdout, result
    bad = sockdir / "bad.yaml"
    bad.write_text(f"listen: [{{address: 'unix:{sockdir}/g.sock'}}]\nroutes:\n  echo: {{unix: {target.path}}}\n"
                   "metrics: 9464\n")
    result = subprocess.run([str(BRIDGE_BINARY), "check", "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and f"{bad}:4: metrics: unknown address '9464'" in result.stderr, result


def test_door_connections_and_bytes(start_bridge, unix_server, tls, sockdir):
    """Connections through a local door: an open one's bytes are counted as they move (a long
    flash shows its throughput while it lasts), and every connection with its bytes once ended."""
    from test_local_door import connect, door_config, receive_all, send_then_half_close

    target = unix_server("echo.sock", echo)
    bridge = start_bridge(config=door_config(tls, sockdir, target.path),
                          extra_args=["--metrics", "tcp:127.0.0.1:0"])
    address = bridge.status()[0]["metrics"]
    opened = os.urandom(300_000)
    with connect(sockdir / "door.sock") as held:
        writer = threading.Thread(target=held.sendall, args=(opened,), daemon=True)
        writer.start()
        echoed = b""
        while len(echoed) < len(opened) and (chunk := held.recv(1 << 20)):
            echoed += chunk
        writer.join(TIMEOUT)
        assert echoed == opened

        def counted() -> dict:
            scraped = samples(scrape(address)[2].decode())
            return {direction: value(scraped, "jmp_bridge_door_bytes_total", route="echo", direction=direction)
                    for direction in ("to_target", "from_target")}

        # The echo came back through the door: the bytes moved; their count follows (bounded).
        deadline = time.monotonic() + TIMEOUT
        while counted() != {"to_target": len(opened), "from_target": len(opened)}:
            assert time.monotonic() < deadline, counted()
        assert value(samples(scrape(address)[2].decode()), "jmp_bridge_door_connections_active", route="echo") == 1
    sizes = [len(opened), 1_000_000, 123_457]
    for size in sizes[1:]:
        data = os.urandom(size)
        with connect(sockdir / "door.sock") as client:
            writer = send_then_half_close(client, data)
            assert receive_all(client) == data
            writer.join(TIMEOUT)
    bridge.wait_for_line(r"door connection finished", count=len(sizes))
    scraped = samples(scrape(address)[2].decode())
    assert value(scraped, "jmp_bridge_door_connections_total", route="echo") == len(sizes)
    assert value(scraped, "jmp_bridge_door_connections_active", route="echo") == 0
    assert value(scraped, "jmp_bridge_door_refused_total", route="echo") == 0
    assert value(scraped, "jmp_bridge_door_bytes_total", route="echo", direction="to_target") == sum(sizes)
    assert value(scraped, "jmp_bridge_door_bytes_total", route="echo", direction="from_target") == sum(sizes)
    # Door connections are not router streams.
    assert value(scraped, "jmp_bridge_stream_bytes_total", route="echo", direction="to_target") == 0
