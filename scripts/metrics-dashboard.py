#!/usr/bin/env python3
"""The load and the picture of scripts/metrics-dashboard (which starts the processes).

Waits for Prometheus' first scrape of jmp-bridge, drives a benchmark-like load through the
bridge for ``--seconds`` (concurrent echo streams of varying size, a busy target, a console with
watchers and one stalled viewer, a local door, and a trickle of failures: unknown routes, a gone
target, cancelled streams, bad router tokens, tokens the exporter gateway never handed out), then
reads the series back through Prometheus' ``/api/v1/query_range`` with the PromQL of the Grafana
dashboard's main panels (``packaging/grafana/jmp-bridge.json``, found by title) and draws them
with matplotlib as a 2×3 grid into ``--output``.

    .venv/bin/python scripts/metrics-dashboard.py --endpoint 127.0.0.1:PORT --gateway 127.0.0.1:PORT \\
        --ca tls.crt --key-file router.key --console LINK --door DOOR --prometheus http://127.0.0.1:PORT \\
        --seconds 75 --output docs/images/metrics-dashboard.png
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import random
import select
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from jumpstarter_protocol import router_pb2, router_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "packaging" / "grafana" / "jmp-bridge.json"
CHUNK = 64 * 1024
RATE_WINDOW = "10s"  # $__rate_interval: Grafana takes at least 4 × the scrape interval (1 s here)


def say(message: str) -> None:
    print(f"metrics-dashboard: {message}", flush=True)


# --------------------------------------------------------------------------------------------
# router tokens, minted as Jumpstarter's controller does (HS256 over the router's secret)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def router_token(key: bytes, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": "https://jumpstarter.dev/stream", "sub": str(uuid.uuid4()),
              "aud": ["https://jumpstarter.dev/router"], "exp": now + 1800, "nbf": now, "iat": now,
              "jti": str(uuid.uuid4()), **overrides}
    signing_input = f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


# --------------------------------------------------------------------------------------------
# the load


@dataclass
class Tally:
    """What the load did, by what happened (printed at the end)."""
    counts: dict[str, int] = field(default_factory=dict)
    bytes_echoed: int = 0

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class Load:
    def __init__(self, args):
        self.args = args
        self.ca = Path(args.ca).read_bytes()
        self.key = Path(args.key_file).read_bytes().strip()
        self.tally = Tally()
        self.rng = random.Random(20)
        self.start = 0.0
        self.stopping = False
        self.stopped_at = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def channel(self, endpoint: str) -> grpc.aio.Channel:
        # Its own subchannel pool: each channel is its own HTTP/2 connection, like separate clients.
        return grpc.aio.secure_channel(endpoint, grpc.ssl_channel_credentials(root_certificates=self.ca),
                                       options=[("grpc.use_local_subchannel_pool", 1)])

    def metadata(self, route: str | None, authorization: str | None = "token") -> tuple:
        items = []
        if route is not None:
            items.append(("jmp-route", route))
        if authorization == "token":
            items.append(("authorization", f"Bearer {router_token(self.key)}"))
        elif authorization is not None:
            items.append(("authorization", authorization))
        return tuple(items)

    # -- one stream

    async def echo_stream(self, channel, route: str, size: int) -> None:
        """Sends ``size`` bytes in CHUNK messages, half-closes, reads the echo until the end."""
        call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=self.metadata(route))
        payload = os.urandom(min(size, CHUNK))

        async def send():
            left = size
            while left > 0:
                n = min(left, CHUNK)
                await call.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_DATA, payload=payload[:n]))
                left -= n
            await call.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_GOAWAY))
            await call.done_writing()

        received = 0
        sender = asyncio.create_task(send())
        try:
            async for response in call:
                received += len(response.payload)
            await sender
        finally:
            sender.cancel()
        code = await call.code()
        self.tally.add(f"{route} {code.name}")
        if code == grpc.StatusCode.OK:
            self.tally.bytes_echoed += received

    # -- workers

    def echo_concurrency(self) -> int:
        """Concurrent echo streams over the run: ramps 1 → 6 and back, so the panels have shape."""
        phase = self.elapsed() / self.args.seconds
        return [1, 2, 4, 6, 6, 3, 2, 1][min(int(phase * 8), 7)]

    async def echo_worker(self, index: int) -> None:
        sizes = [16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024]
        weights = [4, 4, 3, 2, 1]
        async with self.channel(self.args.endpoint) as channel:
            while not self.stopping:
                if index >= self.echo_concurrency():
                    await asyncio.sleep(0.2)
                    continue
                size = self.rng.choices(sizes, weights)[0]
                try:
                    await self.echo_stream(channel, "echo", size)
                except grpc.aio.AioRpcError as error:
                    self.tally.add(f"echo {error.code().name}")
                await asyncio.sleep(self.rng.uniform(0.0, 0.2))

    async def busy_worker(self) -> None:
        """Bursts of small streams to a target that is slow to accept (full backlog): the bridge
        waits for it, which is what the connect-latency panel shows."""
        async with self.channel(self.args.endpoint) as channel:
            while not self.stopping:
                burst = self.rng.randint(2, 6)
                await asyncio.gather(*(self.echo_stream(channel, "busy", 4096) for _ in range(burst)),
                                     return_exceptions=True)
                await asyncio.sleep(self.rng.uniform(0.5, 1.5))

    async def failure(self, kind: str) -> None:
        """One stream that fails on purpose."""
        if kind == "gateway":
            endpoint, metadata = self.args.gateway, (("authorization", f"Bearer {router_token(self.key)}"),)
        else:
            endpoint = self.args.endpoint
            metadata = {
                "unknown-route": self.metadata("nosuch"),
                "gone-target": self.metadata("gone"),
                "cancelled": self.metadata("echo"),
                "no-token": self.metadata("echo", authorization=None),
                "not-bearer": self.metadata("echo", authorization="Basic ZGVtbzpkZW1v"),
                "bad-signature": self.metadata("echo", authorization=f"Bearer {router_token(b'x' * 32)}"),
                "expired": self.metadata("echo", authorization=f"Bearer {router_token(self.key, exp=int(time.time()) - 60)}"),
                "wrong-audience": self.metadata("echo", authorization=f"Bearer {router_token(self.key, aud=['https://example.invalid'])}"),
            }[kind]
        if endpoint is None:
            return
        async with self.channel(endpoint) as channel:
            call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=metadata)
            try:
                await call.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_DATA, payload=b"x" * 1000))
                if kind == "cancelled":
                    await call.read()
                    call.cancel()
                    self.tally.add("echo CANCELLED (by the client)")
                    return
                async for _ in call:
                    pass
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass
            code = await call.code()
            expected = {"unknown-route": "NOT_FOUND", "gone-target": "UNAVAILABLE"}.get(kind, "UNAUTHENTICATED")
            details = "" if code.name == expected else f" ({await call.details()})"
            self.tally.add(f"{kind} {code.name}{details}")

    async def failure_worker(self) -> None:
        kinds = ["unknown-route", "gone-target", "cancelled", "no-token", "not-bearer", "bad-signature",
                 "expired", "wrong-audience", "gateway", "gateway"]
        while not self.stopping:
            await asyncio.sleep(self.rng.uniform(0.2, 0.8))
            try:
                await self.failure(self.rng.choice(kinds))
            except grpc.aio.AioRpcError:
                pass

    async def console_watcher(self) -> None:
        """Watches the console for a while (read-only now and then, typing a line otherwise),
        detaches with a half-close, and comes back later."""
        await asyncio.sleep(2)
        async with self.channel(self.args.endpoint) as channel:
            while not self.stopping:
                metadata = self.metadata("console")
                typing = self.rng.random() < 0.6
                if not typing:
                    metadata += (("jmp-attach", "ro"),)
                call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=metadata)
                seconds = self.rng.uniform(5, 12)

                async def read():
                    while await call.read() != grpc.aio.EOF:
                        pass

                async def session():
                    reader = asyncio.create_task(read())
                    try:
                        deadline = time.monotonic() + seconds
                        while time.monotonic() < deadline and not self.stopping and not reader.done():
                            if typing:
                                await call.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_DATA,
                                                                          payload=b"uptime\r"))
                            await asyncio.sleep(1)
                        if not reader.done():
                            await call.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_GOAWAY))
                            await call.done_writing()
                        await reader
                    finally:
                        reader.cancel()

                try:
                    await asyncio.wait_for(session(), seconds + 15)
                    outcome = (await call.code()).name
                except grpc.aio.AioRpcError as error:
                    outcome = error.code().name
                except Exception as error:  # noqa: BLE001 - counted, and the watcher goes on
                    call.cancel()
                    outcome = f"{type(error).__name__} (cancelled)"
                self.tally.add(f"console {outcome}")
                await asyncio.sleep(self.rng.uniform(2, 6))

    async def stalled_viewer(self, device: "ConsoleDevice") -> None:
        """Once, a third of the way in: a viewer that stops reading while the console prints a
        lot. The bridge cuts it (RESOURCE_EXHAUSTED) once it lags more than the lag limit; the
        viewer sees that status after reading what was already on its way."""
        await asyncio.sleep(self.args.seconds / 3)
        async with self.channel(self.args.endpoint) as channel:
            call = router_pb2_grpc.RouterServiceStub(channel).Stream(
                metadata=self.metadata("console") + (("jmp-attach", "ro"),))
            await call.read()  # attached: the scrollback arrives
            device.burst(24 * 1024 * 1024)
            await asyncio.sleep(6)

            async def drain():
                while await call.read() != grpc.aio.EOF:
                    pass
            try:
                await asyncio.wait_for(drain(), 20)
            except (grpc.aio.AioRpcError, asyncio.TimeoutError):
                call.cancel()
            self.tally.add(f"console stalled viewer {(await call.code()).name}")

    async def door_worker(self) -> None:
        """Tools on the host through the echo route's local door: a connection every few seconds."""
        loop = asyncio.get_running_loop()

        def one():
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(self.args.door)
                data = os.urandom(self.rng.choice([1024, 65536, 1024 * 1024]))

                def send():  # while the echo is read below, or both sides' buffers fill up
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                sender = threading.Thread(target=send, daemon=True)
                sender.start()
                got = 0
                while chunk := s.recv(65536):
                    got += len(chunk)
                sender.join()
                return got == len(data)

        while not self.stopping:
            await asyncio.sleep(self.rng.uniform(1, 4))
            try:
                self.tally.add("door OK" if await loop.run_in_executor(None, one) else "door short")
            except OSError as error:
                self.tally.add(f"door {type(error).__name__}")

    async def run(self) -> None:
        device = ConsoleDevice(self.args.console) if self.args.console else None
        self.start = time.monotonic()
        tasks = [asyncio.create_task(self.echo_worker(i)) for i in range(6)]
        tasks += [asyncio.create_task(self.busy_worker()), asyncio.create_task(self.failure_worker())]
        if self.args.door:
            tasks.append(asyncio.create_task(self.door_worker()))
        if device:
            tasks += [asyncio.create_task(self.console_watcher()), asyncio.create_task(self.stalled_viewer(device))]
        try:
            report = 0
            while self.elapsed() < self.args.seconds:
                if self.elapsed() >= report:
                    say(f"load: {self.elapsed():.0f}/{self.args.seconds} s, {self.echo_concurrency()} echo streams at once")
                    report += 15
                await asyncio.sleep(0.5)
            self.stopping = True
            self.stopped_at = self.elapsed()
            done, pending = await asyncio.wait(tasks, timeout=30)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() and not isinstance(task.exception(), asyncio.CancelledError):
                    say(f"load: a worker failed: {task.exception()!r}")
        finally:
            if device:
                device.close()


class ConsoleDevice:
    """The far end of the pty console (what QEMU or agetty would be): prints a boot log and a
    line a second, reads (and drops) what is typed."""

    def __init__(self, link: str):
        self.fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        self.stop = threading.Event()
        self._burst = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def burst(self, size: int) -> None:
        with self._lock:
            self._burst += size

    def _run(self) -> None:
        line = 0
        for i in range(200):
            os.write(self.fd, f"[    {i * 0.0137:8.4f}] boot: probing device {i}\r\n".encode())
        next_line = time.monotonic()
        while not self.stop.is_set():
            with self._lock:
                burst, self._burst = min(self._burst, 256 * 1024), self._burst - min(self._burst, 256 * 1024)
            if burst:
                text = (b"dmesg: " + b"x" * 4087 + b"\r\n") * (burst // 4096)
                os.write(self.fd, text)
            ready, _, _ = select.select([self.fd], [], [], 0 if burst else 0.1)
            if ready:
                os.read(self.fd, 65536)
            if time.monotonic() >= next_line:
                line += 1
                os.write(self.fd, f"lab-host login: heartbeat {line} at {time.strftime('%H:%M:%S')}\r\n".encode())
                next_line += 0.25

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        os.close(self.fd)


# --------------------------------------------------------------------------------------------
# Prometheus and the picture


class PrometheusAPI:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, **params) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=30) as r:
            reply = json.load(r)
        if reply.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {reply}")
        return reply["data"]

    def scrape_time(self) -> float | None:
        result = self.get("query", query='timestamp(up{job="jmp-bridge"})')["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for_scrape_after(self, moment: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (stamp := self.scrape_time()) is None or stamp <= moment:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no scrape of jmp-bridge after {moment} within {timeout} s")
            time.sleep(0.2)

    def range(self, expression: str, start: float, end: float, step: float) -> list[dict]:
        data = self.get("query_range", query=expression, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        return data["result"]


def dashboard_panels() -> dict[str, dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {panel["title"]: panel for panel in dashboard["panels"] if panel.get("type") != "row"}


def promql(expression: str) -> str:
    """The dashboard's expression with Grafana's variables filled in (every instance and route)."""
    return expression.replace("$__rate_interval", RATE_WINDOW).replace("$instance", ".*").replace("$route", ".*")


def legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    return " ".join(text.split()) or "value"


@dataclass
class Source:
    """Series of one dashboard panel on a subplot: its targets whose legend starts with ``only``
    (all if None), values times ``scale``, labelled ``label`` (else the panel's legend format,
    after ``prefix``)."""
    panel: str
    scale: float = 1.0
    prefix: str = ""
    only: str | None = None
    label: str | None = None
    lines: bool = False  # in a stacked subplot: drawn as lines over the areas, not stacked


#: The 2×3 grid: (title, sources, y label, (right-axis sources, right y label), "stacked" or None).
GRID = [
    ("Active streams by route", [Source("Active streams by route")], "streams", None),
    ("Streams ended per second, by status", [Source("Streams by status")], "streams/s", None),
    ("Throughput by route and direction (to_target dashed)",
     [Source("Throughput by route and direction", 1 / 2**20)], "MiB/s", None),
    ("Target connect latency p50 / p99 (p99 dashed)", [Source("Target connect latency p50 / p99", 1000)],
     "milliseconds (log scale)", "log"),
    ("Errors: failed streams (stacked), auth failures and refused tokens (lines)",
     [Source("Failed streams by status"), Source("Authentication failures by reason", prefix="auth ", lines=True),
      Source("Gateway refused tokens", prefix="gateway ", lines=True)], "per second", "stacked"),
    ("Bridge process: CPU and resident memory", [Source("CPU", label="CPU (left)")], "CPU (cores)",
     ([Source("Memory", 1 / 2**20, only="resident", label="resident memory (right)")], "resident memory (MiB)")),
]


def color_key(name: str) -> str:
    """Series that differ only in quantile or direction share a colour."""
    for word in ("p50 ", "p99 ", "mean "):
        name = name.removeprefix(word)
    return name.removesuffix(" to_target").removesuffix(" from_target")


def plot(api: PrometheusAPI, start: float, end: float, load_start: float, load_seconds: float, output: Path,
         title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from PIL import Image

    panels = dashboard_panels()
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors: dict[str, str] = {}

    def series(source: Source):
        panel = panels[source.panel]
        for target in panel["targets"]:
            if source.only and not target["legendFormat"].startswith(source.only):
                continue
            for result in api.range(promql(target["expr"]), start, end, step=1):
                points = [(float(t) - load_start, float(v) * source.scale) for t, v in result["values"]
                          if v not in ("NaN", "+Inf", "-Inf")]
                if points:
                    xs, ys = zip(*points)
                    name = source.label or source.prefix + legend(target["legendFormat"], result["metric"])
                    yield name, xs, ys

    def draw_stacked(ax, sources: list[Source]) -> list:
        """Areas stacked in the order of the sources, on the union of their timestamps; the
        sources marked ``lines`` as lines over them."""
        stacked = [(name, dict(zip(xs, ys))) for source in sources if not source.lines
                   for name, xs, ys in sorted(series(source)) if max(ys) > 0]
        handles = []
        if stacked:
            times = sorted({t for _, values in stacked for t in values})
            handles += ax.stackplot(times, *[[values.get(t, 0.0) for t in times] for _, values in stacked],
                                    labels=[name for name, _ in stacked], colors=plt.get_cmap("Pastel1").colors,
                                    linewidth=0.3, edgecolor="white")
        dark = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#000000", "#a6761d", "#666666"]
        for i, (name, xs, ys) in enumerate(item for source in sources if source.lines
                                           for item in sorted(series(source)) if max(item[2]) > 0):
            handles += ax.plot(xs, ys, color=dark[i % len(dark)], linewidth=1.2, label=name)
        return handles

    def draw(ax, sources: list[Source], keep_zero: bool, positive: bool = False) -> list:
        lines = []
        for source in sources:
            for name, xs, ys in sorted(series(source)):
                if not keep_zero and max(ys) == 0:
                    continue  # a route or status that had nothing: left out of the legend
                if positive:  # for a log scale
                    ys = [y if y > 0 else float("nan") for y in ys]
                key = color_key(name)
                color = colors.setdefault(key, palette[len(colors) % len(palette)])
                dashed = name.startswith("p99 ") or name.endswith(" to_target")
                lines += ax.plot(xs, ys, "--" if dashed else "-", color=color, linewidth=1.4, label=name)
        return lines

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
                         "axes.edgecolor": "#888888", "axes.grid": True, "grid.color": "#e0e0e0",
                         "legend.fontsize": 7.5, "legend.framealpha": 0.9})
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.6), dpi=100, facecolor="white")
    for ax, (panel_title, sources, ylabel, right) in zip(axes.flat, GRID):
        colors.clear()
        ax.axvspan(0, load_seconds, color="#f0f0f0", zorder=0)
        if right == "stacked":
            lines, right = draw_stacked(ax, sources), None
        elif right == "log":
            lines, right = draw(ax, sources, keep_zero=False, positive=True), None
            ax.set_yscale("log")
        else:
            lines = draw(ax, sources, keep_zero=right is not None)
        if right:
            right_sources, right_label = right
            twin = ax.twinx()
            lines += draw(twin, right_sources, keep_zero=True)
            twin.set_ylabel(right_label)
            twin.set_ylim(bottom=0)
            twin.grid(False)
        if lines:
            ax.legend(lines, [line.get_label() for line in lines], loc="upper left",
                      ncol=2 if len(lines) > 5 else 1)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888888")
        ax.set_title(panel_title)
        ax.set_xlabel("time since the load started (s)")
        ax.set_ylabel(ylabel)
        ax.set_xlim(start - load_start, end - load_start)
        if ax.get_yscale() == "linear":
            ax.set_ylim(bottom=0)
        if ylabel == "streams":
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=12, fontweight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.965))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, facecolor="white")
    plt.close(fig)
    # A palette PNG: a fraction of the size, the same picture for lines on white.
    with Image.open(output) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)
    say(f"wrote {output} ({output.stat().st_size // 1024} KiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="HOST:PORT of the bridge's TLS listener")
    parser.add_argument("--gateway", help="HOST:PORT of the bridge's exporter gateway")
    parser.add_argument("--ca", required=True, help="the TLS certificate (self-signed: also the CA)")
    parser.add_argument("--key-file", required=True, help="the router's shared secret (jwt key-file)")
    parser.add_argument("--console", help="the pty console route's link")
    parser.add_argument("--door", help="the echo route's local door (unix socket path)")
    parser.add_argument("--prometheus", required=True, help="Prometheus' URL")
    parser.add_argument("--seconds", type=int, default=75)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    logging.getLogger("jumpstarter").setLevel(logging.ERROR)

    api = PrometheusAPI(args.prometheus)
    say("waiting for Prometheus' first scrape of jmp-bridge")
    api.wait_for_scrape_after(0)
    first = api.scrape_time()
    time.sleep(5)  # an idle baseline before the load
    load = Load(args)
    load_start = time.time()
    say(f"load for {args.seconds} s")
    asyncio.run(load.run())
    load_seconds = load.stopped_at
    time.sleep(8)  # the tail: rates fall back to zero
    end = time.time()
    api.wait_for_scrape_after(end - 0.5)
    for what, count in sorted(load.tally.counts.items()):
        say(f"  {count:5d} × {what}")
    say(f"  {load.tally.bytes_echoed / 2**20:.0f} MiB echoed back through OK streams")
    info = api.get("query", query="jmp_bridge_build_info")["result"]
    version = info[0]["metric"].get("version", "") if info else ""
    title = (f"jmp-bridge{(' ' + version) if version else ''}: Prometheus /metrics during a "
             f"{args.seconds} s demo load (grey span); scraped every 1 s, rates over {RATE_WINDOW}")
    plot(api, max(first, load_start - 5), end, load_start, load_seconds, args.output, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
