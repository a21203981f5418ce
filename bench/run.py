#!/usr/bin/env python3
"""Runs the jmp-bridge benchmark on loopback and prints/saves a markdown table.

Called by scripts/bench after it has built everything; see bench/README.md. Standard library only.
Every process it starts is stopped again (by its own pid) when it ends, fails or is signalled.
"""

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * 1024 * 1024

children: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
    if proc in children:
        children.remove(proc)


def stop_all() -> None:
    for proc in list(children):
        stop(proc)


def on_signal(signum, _frame):
    raise SystemExit(f"interrupted by signal {signum}")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def drop_cached_pages(path: str) -> None:
    """Evicts a file's pages from the page cache (those no running process maps).

    The resident size of a binary's pages depends on how the file came into the page cache, not
    only on what the process touches: the kernel maps a large folio whole and fills the 64 KiB
    around a fault from whatever is cached, so the same jmp-bridge binary, idle, measured 19.3-19.9
    MiB started cold, 19.8 MiB just after the link, 20.8-21.6 MiB after a `cp` of the file and
    24.1-25.7 MiB after a `cat` of it (ext4, Linux 6.18; anonymous memory 2.4 MiB each time). A
    start from a cold cache, as at boot, makes the idle RSS of two builds comparable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # a binary just linked is still dirty, and dirty pages are not dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Bridge:
    """A running bridge process (jmp-bridge or the reference) with its port and log.

    metrics=True (jmp-bridge only) starts it with `--metrics tcp:127.0.0.1:0`; the port it bound
    is .metrics_port (from `status`'s first line, `metrics=tcp:127.0.0.1:PORT`, else its log line
    `metrics endpoint bound`)."""

    def __init__(self, kind: str, args, work: str, routes: dict[str, str], tag: str, metrics: bool = False,
                 tls: tuple[str, str] | None = None):
        if metrics and kind != "jmp-bridge":
            raise ValueError("only jmp-bridge serves metrics")
        self.kind = kind
        self.metrics_port = None
        self.log_path = os.path.join(work, f"{kind}-{tag}.log")
        if kind == "sink":
            cmd = [args.client, "--addr", "127.0.0.1:0", "--mode", "sink"]
            if tls:
                cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        elif kind == "jmp-bridge":
            self.control = os.path.join(work, f"control-{tag}.sock")
            cmd = [args.bridge, "serve", "--listen", "tcp:127.0.0.1:0", "--insecure", "--allow-unauthenticated",
                   "--control", self.control]
            for name, path in routes.items():
                cmd += ["--route", f"{name}=unix:{path}"]
            cmd += ["--default-route", next(iter(routes))]
            if metrics:
                cmd += ["--metrics", "tcp:127.0.0.1:0"]
        else:
            cmd = [args.python, args.reference, "--listen", "127.0.0.1:0"]
            for name, path in routes.items():
                cmd += ["--route", f"{name}={path}"]
        self.log_file = open(self.log_path, "w")
        t0 = time.perf_counter()
        # The sink reports on stdout, the bridges on stderr.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if kind == "sink" else self.log_file,
                                     stderr=self.log_file if kind == "sink" else subprocess.PIPE,
                                     text=True, bufsize=1)
        self.out = self.proc.stdout if kind == "sink" else self.proc.stderr
        children.append(self.proc)
        self.port = None
        self.ready_s = None
        deadline = time.monotonic() + 60
        logged_port = logged_metrics_port = None
        while time.monotonic() < deadline:
            line = self.out.readline()
            if not line:
                break
            self.log_file.write(line)
            if kind == "jmp-bridge" and "] listening" in line:
                # Only for older binaries (BENCH_BRIDGE) whose status has no listener= lines yet.
                if (m := re.search(r"address=tcp:127\.0\.0\.1:(\d+)", line)) and m.group(1) != "0":
                    logged_port = int(m.group(1))
            if kind == "jmp-bridge" and "] metrics endpoint bound" in line:
                if (m := re.search(r"address=tcp:127\.0\.0\.1:(\d+)", line)) and m.group(1) != "0":
                    logged_metrics_port = int(m.group(1))
            # jmp-bridge's readiness line ends "] ready" ("console ready" and the like come before).
            if re.search(r"\] ready$" if kind == "jmp-bridge" else r"\bready\b", line.rstrip()):
                self.ready_s = time.perf_counter() - t0
                break
            # The sink and the reference bridge print their bound port on their ready line's way.
            if kind != "jmp-bridge" and (m := re.search(r"127\.0\.0\.1:(\d+)", line)) and m.group(1) != "0":
                self.port = int(m.group(1))
        if kind == "jmp-bridge" and self.ready_s is not None:
            # What jmp-bridge bound comes from `jmp-bridge status` (its listener= line), not its log.
            reply = subprocess.run([args.bridge, "status", "--control", self.control],
                                   capture_output=True, text=True, timeout=10).stdout
            if m := re.search(r"^listener=tcp:127\.0\.0\.1:(\d+) ", reply, re.M):
                self.port = int(m.group(1))
            else:
                self.port = logged_port
            if metrics:
                m = re.search(r"^bridge=jmp-bridge .*\bmetrics=tcp:127\.0\.0\.1:(\d+)\b", reply, re.M)
                self.metrics_port = int(m.group(1)) if m else logged_metrics_port
        if self.ready_s is None or self.port is None or (metrics and self.metrics_port is None):
            stop(self.proc)
            self.log_file.close()
            what = "did not report its metrics endpoint" if self.port is not None and self.ready_s is not None \
                else "did not become ready"
            raise RuntimeError(f"{kind} {what}; see {self.log_path}:\n"
                               + open(self.log_path).read()[-2000:])
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self):
        for line in self.out:
            self.log_file.write(line)
        self.log_file.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self):
        stop(self.proc)
        self.drain.join(timeout=3)
        self.log_file.close()

    def problems(self) -> list[str]:
        """Log lines at warning level or above (jmp-bridge) / any traceback (reference)."""
        out = []
        with open(self.log_path) as f:
            for line in f:
                if self.kind == "jmp-bridge":
                    # The unauthenticated listener is what the benchmark asks for; its warning is expected.
                    if re.search(r"\b(warning|error|critical)\b", line) and "UNAUTHENTICATED LISTENER" not in line:
                        out.append(line.rstrip())
                elif re.search(r"Traceback|ERROR|Error", line):
                    out.append(line.rstrip())
        return out


class Scraper:
    """GETs a bridge's /metrics once a second while a measurement of that bridge runs (as
    Prometheus would scrape it), from a thread; counts the scrapes and checks that each answer is
    200 and has `jmp_bridge_stream_bytes_total`. Between measurements it waits without polling,
    so it costs nothing while another bridge is measured."""

    CHECK = "jmp_bridge_stream_bytes_total"

    def __init__(self, port: int, interval: float = 1.0):
        self.port, self.interval = port, interval
        self.scrapes = 0
        self.bad: list[str] = []
        self.durations_ms: list[float] = []
        self.bytes_to_targets = None  # sum of the counter's to_target series in the last good answer
        self._active = self._closed = self._busy = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def scrape(self) -> str | None:
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                status, body = resp.status, resp.read().decode("utf-8", "replace")
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as error:
            status, body = None, f"{type(error).__name__}: {error}"
        ms = (time.perf_counter() - t0) * 1000
        with self._cond:
            self.scrapes += 1
            self.durations_ms.append(ms)
            if status != 200 or self.CHECK not in body:
                self.bad.append(f"scrape {self.scrapes}: status {status}, " +
                                ("no " + self.CHECK if status == 200 else body[:200]))
                return None
            to_target = [float(m.group(1)) for m in re.finditer(
                r'^jmp_bridge_stream_bytes_total\{[^}]*direction="to_target"[^}]*\} (\S+)$', body, re.M)]
            self.bytes_to_targets = sum(to_target) if to_target else None
        return body

    def _run(self):
        next_at = 0.0
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                if not self._active:
                    self._cond.wait()
                elif now < next_at:
                    self._cond.wait(next_at - now)
                else:
                    next_at = now + self.interval
                    self._busy = True
                    self._cond.release()
                    try:
                        self.scrape()
                    finally:
                        self._cond.acquire()
                        self._busy = False
                        self._cond.notify_all()

    def _set(self, active: bool):
        with self._cond:
            self._active = active
            self._cond.notify_all()
            # A scrape still in flight ends before the next measurement (of another bridge) starts.
            while not active and self._busy:
                self._cond.wait()

    @contextlib.contextmanager
    def scraping(self):
        """Scrapes while the block runs: at once when it starts (unless the last scrape was less
        than a second ago), then every second."""
        self._set(True)
        try:
            yield
        finally:
            self._set(False)

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def vcpus_awake():
    """One `nice -n 19` busy loop per CPU while the block runs. On a virtual machine a round trip
    wakes several halted vCPUs, and each wake-up goes through the hypervisor (tens of µs here);
    with every vCPU busy at the lowest priority, a woken process preempts the loop at once, and
    what is left is the processes' own latency."""
    spinners = [subprocess.Popen(["nice", "-n", "19", "sh", "-c", "while :; do :; done"])
                for _ in range(os.cpu_count() or 1)]
    children.extend(spinners)
    try:
        time.sleep(0.2)
        yield
    finally:
        for spinner in spinners:
            stop(spinner)


def raw_client(tool: str, bridge: Bridge, *opts, timeout=120, target_pid=None) -> dict:
    """bench/rawclient.c with opts against bridge; its JSON line as a dict."""
    cmd = [tool, "--addr", bridge.addr, "--pid", str(bridge.pid), *map(str, opts)]
    target_cpu0 = proc_cpu(target_pid) if target_pid else None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as error:
        result = {"ok": False, "error": f"rawclient: {error}"}
    result["cmd"] = " ".join(cmd)
    if target_pid:
        result["target_cpu_s"] = proc_cpu(target_pid) - target_cpu0
    return result


def raw_latency(tool: str, bridge: Bridge, iters: int) -> dict:
    """1-byte round trips with bench/rawclient.c on route echo."""
    return raw_client(tool, bridge, "--iters", iters, "--route", "echo")


def summarize_runs(rs: list[dict]) -> dict:
    """Throughput runs of one bridge and size: the median run, with CPU per GiB over all good runs."""
    good = sorted((x for x in rs if "bytes_per_s" in x), key=lambda x: x["bytes_per_s"])
    r = dict(good[len(good) // 2]) if good else dict(rs[0])
    r["ok"] = all(x.get("ok") for x in rs)
    r["runs_bytes_per_s"] = [x.get("bytes_per_s") for x in rs]
    moved = sum(x.get("moved", 0) for x in good)
    cpu = sum(x.get("bridge_cpu_s", 0) for x in good)
    r["cpu_per_gib"] = cpu / (moved / GIB) if moved else None
    r["all_moved"], r["all_bridge_cpu_s"] = moved, cpu
    r["all_seconds"] = sum(x.get("seconds", 0) for x in good)
    r["all_client_cpu_s"] = sum(x.get("client_cpu_s", 0) for x in good)
    r["all_target_cpu_s"] = sum(x.get("target_cpu_s", 0) for x in good)
    counted = [x for x in good if "bridge_writes" in x]
    counted_moved = sum(x.get("moved", 0) for x in counted)
    if counted_moved:
        r["reads_per_gib"] = sum(x["bridge_reads"] for x in counted) / (counted_moved / GIB)
        r["writes_per_gib"] = sum(x["bridge_writes"] for x in counted) / (counted_moved / GIB)
    errors = [x.get("error") or f"status {x.get('status')} {x.get('message', '')}".strip()
              if "status" in x else x.get("error") or f"ended: {x.get('ended')}"
              for x in rs if not x.get("ok")]
    if errors:
        r["error"] = "; ".join(map(str, errors))
    return r


def proc_syscalls(pid: int) -> tuple[int, int] | None:
    """The read and write system calls `pid` has made (/proc/PID/io `syscr`, `syscw`: read,
    readv, write, writev and the like; splice(2), sendmsg(2) and recvmsg(2) are not counted)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            fields = dict(line.split(": ", 1) for line in f.read().splitlines())
        return int(fields["syscr"]), int(fields["syscw"])
    except (OSError, KeyError, ValueError):
        return None


def client(args, bridge: Bridge, *opts, timeout=300, target_pid=None) -> dict:
    cmd = [args.client, "--addr", bridge.addr, "--pid", str(bridge.pid), *map(str, opts)]
    target_cpu0 = proc_cpu(target_pid) if target_pid else None
    syscalls0 = proc_syscalls(bridge.pid)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        return {"ok": False, "error": f"client timed out after {timeout}s", "cmd": " ".join(cmd)}
    children.remove(proc)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"ok": False, "error": f"no result (exit {proc.returncode}): {err.strip()[-500:]}"}
    result["cmd"] = " ".join(cmd)
    if target_pid:
        result["target_cpu_s"] = proc_cpu(target_pid) - target_cpu0
    syscalls1 = proc_syscalls(bridge.pid)
    if syscalls0 and syscalls1:
        result["bridge_reads"], result["bridge_writes"] = (b - a for a, b in zip(syscalls0, syscalls1))
    if err.strip():
        result["stderr"] = err.strip()[-500:]
    return result


def log_throughput(label: str, r: dict) -> None:
    """One progress line for a summarized throughput measurement."""
    log(f"{label}: {fmt_rate(r.get('bytes_per_s') or 0)} "
        f"(runs {[round(v / 1e6) if v else v for v in r['runs_bytes_per_s']]} MB/s), "
        f"{r['cpu_per_gib'] or 0:.2f} CPU s/GiB, ok={r['ok']}"
        + (f" error={r.get('error')}" if r.get("error") else ""))


def machine_header(args) -> str:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    swift = swift[0] if swift else "unknown"
    jmp = subprocess.run([args.python, "-c", "import importlib.metadata as m; print(m.version('jumpstarter'), "
                          "m.version('grpcio'))"], capture_output=True, text=True).stdout.split()
    bridge_version = subprocess.run([args.bridge, "--version"], capture_output=True, text=True).stdout.strip()
    grpcpp = subprocess.run(["pkg-config", "--modversion", "grpc++"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", args.repo, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    lines = [
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu}, {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"kernel {platform.release()}",
        f"- load average when starting: {' '.join(load)}",
        f"- jmp-bridge: {bridge_version or '?'} ({args.bridge_origin or f'release build of this checkout, git {commit}'}), "
        f"{swift}",
        f"- reference: jumpstarter {jmp[0] if jmp else '?'} (grpcio {jmp[1] if len(jmp) > 1 else '?'}, "
        f"Python {subprocess.run([args.python, '--version'], capture_output=True, text=True).stdout.split()[-1]})",
        f"- load client: bench/loadclient.cc, grpc C++ {grpcpp} (Debian), plaintext HTTP/2 over 127.0.0.1",
    ]
    return "\n".join(lines)


def fmt_rate(bps):
    return f"{bps / 1e6:,.0f} MB/s" if bps >= 1e7 else f"{bps / 1e6:,.1f} MB/s"


def start_targets(args, work: str, modes) -> tuple[dict, dict]:
    """The C targets (bench/targets.c) for modes: their socket paths and pids by mode."""
    socks, target_pids = {}, {}
    for mode in modes:
        socks[mode] = os.path.join(work, f"{mode}.sock")
        cmd = [args.targets, mode, socks[mode]] + ([str(int(args.slow_rate))] if mode == "slow" else [])
        t = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        children.append(t)
        target_pids[mode] = t.pid
        if t.stdout.readline().strip() != "ready":
            raise RuntimeError(f"target {mode} did not start")
    return socks, target_pids


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repo", required=True)
    p.add_argument("--bridge", required=True)
    p.add_argument("--bridge-origin", default="", help="where the jmp-bridge binary comes from, for the header")
    p.add_argument("--client", required=True)
    p.add_argument("--rawclient", required=True, help="the raw HTTP/2 client (bench/rawclient.c)")
    p.add_argument("--targets", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--results", required=True, help="directory for the .md result")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each throughput run")
    p.add_argument("--sizes", default="1024,16384,65536,262144")
    p.add_argument("--batch", type=int, default=32,
                   help="client sets gRPC's buffer hint on all but every Nth write (1: none)")
    p.add_argument("--iters", type=int, default=5000, help="1-byte round trips per run")
    p.add_argument("--repeat", type=int, default=3, help="runs per throughput and latency measurement")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--slow-bytes", type=int, default=GIB)
    p.add_argument("--slow-rate", type=float, default=10e6, help="slow target, bytes/s")
    p.add_argument("--startup-runs", type=int, default=7)
    p.add_argument("--door-bytes", type=int, default=4 * GIB, help="bytes per local-door run")
    p.add_argument("--only", choices=["all", "gateway", "metrics"], default="all",
                   help="gateway: only the exporter gateway's rows (relay throughput, stream set-up); "
                        "metrics: only the metrics on/off rows")
    p.add_argument("--setup-runs", type=int, default=20, help="streams per path for the gateway's set-up rows")
    p.add_argument("--setup-warmup", type=int, default=5, help="warm-up streams per path before those")
    p.add_argument("--netem-delay-ms", type=float, default=20.0,
                   help="round trip added between the lab host and the cluster (netem, half each way; "
                        "bench/delay_relay.py where the kernel has no netem)")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    work = tempfile.mkdtemp(prefix="jmp-bench.")
    started = time.monotonic()
    header = machine_header(args)
    kinds = ["jmp-bridge", "reference"]
    res: dict = {k: {} for k in kinds}
    problems: dict = {k: [] for k in kinds}
    problems["gateway"] = []
    problems["metrics"] = []
    if args.only == "metrics":
        try:
            socks, target_pids = start_targets(args, work, ("discard", "echo"))
            res["metrics"] = run_metrics(args, work, socks, target_pids, problems)
        finally:
            stop_all()
        elapsed = time.monotonic() - started
        md = render_only("metrics", "metrics on and off", render_metrics, args, header, res, problems, elapsed)
        return save(args, md, res, problems, elapsed, work, "-metrics")
    if args.only == "gateway":
        try:
            res["gateway"] = run_gateway(args, work, problems)
        finally:
            stop_all()
        elapsed = time.monotonic() - started
        md = render_only("gateway", "gateway rows", render_gateway, args, header, res, problems, elapsed)
        return save(args, md, res, problems, elapsed, work, "-gateway")
    try:
        socks, target_pids = start_targets(args, work, ("discard", "echo", "slow"))
        routes = {"echo": socks["echo"], "discard": socks["discard"]}

        # Startup: exec to the "ready" log line (jmp-bridge logs it once it serves; the reference
        # once grpc.aio's server has started), then idle RSS of a fresh process.
        for kind in kinds:
            runs = args.startup_runs if kind == "jmp-bridge" else max(3, args.startup_runs // 2)
            times = []
            for i in range(runs):
                b = Bridge(kind, args, work, routes, f"start{i}")
                times.append(b.ready_s)
                b.close()
            res[kind]["ready_ms"] = statistics.median(times) * 1000
            res[kind]["ready_all_ms"] = [round(t * 1000, 1) for t in times]
            log(f"{kind}: exec->ready median {res[kind]['ready_ms']:.1f} ms {res[kind]['ready_all_ms']}")

        # Idle RSS from a cold page cache (see drop_cached_pages); the reference's interpreter
        # and libraries are shared with other processes and stay as they are.
        drop_cached_pages(args.bridge)
        bridges = {k: Bridge(k, args, work, routes, "main") for k in kinds}
        time.sleep(1.0)
        for kind, b in bridges.items():
            res[kind]["idle_rss_kib"] = rss_kib(b.pid)
            res[kind]["idle_rss_anon_kib"] = rss_kib(b.pid, "RssAnon")
            log(f"{kind}: idle RSS {res[kind]['idle_rss_kib']} KiB "
                f"({res[kind]['idle_rss_anon_kib']} KiB anonymous)")

        # 1,000 concurrent streams on one HTTP/2 connection, each echoing 64 bytes.
        for kind, b in bridges.items():
            r = client(args, b, "--mode", "streams", "--count", args.streams, "--size", 64, "--route", "echo",
                       "--timeout", 30)
            expected = "0" if kind == "jmp-bridge" else "10"
            if set(r.get("statuses", {})) - {expected}:
                r["ok"] = False
                r["error"] = (f"streams ended with statuses {r['statuses']} (expected {expected}); "
                              f"progress 5 s into closing: {r.get('stalled_5s')}")
            res[kind]["streams"] = r
            log(f"{kind}: {args.streams} streams: {json.dumps({k: r.get(k) for k in ('ok', 'echo_all_s', 'close_all_s', 'rss_before_kib', 'rss_open_kib', 'per_stream_kib', 'statuses', 'error')})}")

        # 1-byte round trips: --repeat runs per bridge, alternating; each percentile is the median
        # over the runs.
        # Twice: with the grpc C++ load client, and with bench/rawclient.c, a minimal HTTP/2
        # client on one blocking socket (grpc C++ passes every message through its own threads,
        # which is most of a round trip here).
        # A third time with the raw client while every vCPU is kept awake (see vcpus_awake()).
        for key, tool in (("latency", None), ("rawlatency", args.rawclient), ("rawlatency-awake", args.rawclient)):
            lat_runs = {k: [] for k in kinds}
            with vcpus_awake() if key == "rawlatency-awake" else contextlib.nullcontext():
                for rep in range(args.repeat):
                    for kind, b in bridges.items():
                        if tool:
                            lat_runs[kind].append(raw_latency(tool, b, args.iters))
                        else:
                            lat_runs[kind].append(client(args, b, "--mode", "latency", "--iters", args.iters,
                                                         "--route", "echo", "--timeout", 120))
            for kind in kinds:
                runs = lat_runs[kind]
                r = {"ok": all(x.get("ok") for x in runs), "iters": args.iters, "runs": runs}
                for q in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"):
                    vals = [x[q] for x in runs if x.get("ok") and q in x]
                    r[q] = statistics.median(vals) if vals else None
                errors = [x.get("error") or x.get("message") or f"ended: {x.get('ended')}"
                          for x in runs if not x.get("ok")]
                if errors:
                    r["error"] = "; ".join(map(str, errors))
                res[kind][key] = r
                log(f"{kind}: RTT ({key}) p50 {r.get('p50_us')} p99 {r.get('p99_us')} p99.9 {r.get('p999_us')} us "
                    f"(runs p99: {[x.get('p99_us') for x in runs]})")

        # Throughput: one stream, one-way into the discard target and echo, per frame size; --repeat
        # runs alternating between the bridges; the median run's throughput is reported and CPU per GiB
        # is summed over all runs.
        for mode in ("oneway", "echo"):
            for size in sizes:
                runs = {k: [] for k in kinds}
                route = "discard" if mode == "oneway" else "echo"
                for rep in range(args.repeat):
                    for kind, b in bridges.items():
                        runs[kind].append(client(args, b, "--mode", mode, "--size", size, "--seconds", args.seconds,
                                                 "--batch", args.batch, "--route", route,
                                                 "--timeout", args.seconds + 120, target_pid=target_pids[route]))
                for kind in kinds:
                    res[kind][f"{mode}-{size}"] = summarize_runs(runs[kind])
                    log_throughput(f"{kind}: {mode} {size // KIB} KiB", res[kind][f"{mode}-{size}"])

        # One-way again with bench/rawclient.c, which writes a prepared buffer in DATA frames as
        # large as the bridge allows and costs next to nothing itself: what each bridge carries
        # when the grpc C++ client is not the limit.
        for size in sizes:
            runs = {k: [] for k in kinds}
            for rep in range(args.repeat):
                for kind, b in bridges.items():
                    runs[kind].append(raw_client(args.rawclient, b, "--mode", "oneway", "--size", size,
                                                 "--seconds", args.seconds, "--route", "discard",
                                                 timeout=args.seconds + 120, target_pid=target_pids["discard"]))
            for kind in kinds:
                res[kind][f"raw-oneway-{size}"] = summarize_runs(runs[kind])
                log_throughput(f"{kind}: raw client oneway {size // KIB} KiB", res[kind][f"raw-oneway-{size}"])

        for kind, b in bridges.items():
            b.close()
            problems[kind] += b.problems()

        # Metrics off and on (issue 20): two fresh jmp-bridges, interleaved runs.
        res["metrics"] = run_metrics(args, work, socks, target_pids, problems)

        # Context: the same client against a grpc C++ server for the method (no bridge, no Unix
        # socket), one run each: what the client and gRPC reach on this machine by themselves.
        sink = Bridge("sink", args, work, {}, "ctx")
        res["sink"] = {}
        for mode in ("oneway", "echo"):
            for size in sizes:
                r = client(args, sink, "--mode", mode, "--size", size, "--seconds", args.seconds,
                           "--batch", args.batch, "--route", "discard" if mode == "oneway" else "echo",
                           "--timeout", args.seconds + 120)
                res["sink"][f"{mode}-{size}"] = r
                log(f"grpc C++ sink: {mode} {size // KIB} KiB: {fmt_rate(r.get('bytes_per_s', 0))}, "
                    f"server CPU {r.get('bridge_cpu_s')} s, client CPU {r.get('client_cpu_s')} s")
        res["sink"]["latency"] = client(args, sink, "--mode", "latency", "--iters", args.iters, "--route", "echo",
                                        "--timeout", 120)
        log(f"grpc C++ sink: RTT p50 {res['sink']['latency'].get('p50_us')} p99 {res['sink']['latency'].get('p99_us')}")
        for size in sizes:
            r = raw_client(args.rawclient, sink, "--mode", "oneway", "--size", size, "--seconds", args.seconds,
                           "--route", "discard", timeout=args.seconds + 120)
            res["sink"][f"raw-oneway-{size}"] = r
            log(f"grpc C++ sink, raw client: oneway {size // KIB} KiB: {fmt_rate(r.get('bytes_per_s') or 0)}, "
                f"server CPU {r.get('bridge_cpu_s')} s")
        res["sink"]["rawlatency"] = raw_latency(args.rawclient, sink, args.iters)
        with vcpus_awake():
            res["sink"]["rawlatency-awake"] = raw_latency(args.rawclient, sink, args.iters)
        log(f"grpc C++ sink, raw client: RTT p50 {res['sink']['rawlatency'].get('p50_us')} "
            f"p99 {res['sink']['rawlatency'].get('p99_us')}")
        sink.close()

        # Slow target: push --slow-bytes through each bridge (both at once, fresh processes) into a
        # target that reads at --slow-rate; sample the bridge's RSS every 100 ms.
        slow_bridges = {k: Bridge(k, args, work, {"slow": socks["slow"]}, "slow") for k in kinds}
        time.sleep(0.5)
        out = {}

        def run_slow(kind, b):
            out[kind] = client(args, b, "--mode", "oneway", "--size", 65536, "--bytes", args.slow_bytes,
                               "--rss-sample-ms", 100, "--route", "slow",
                               "--timeout", args.slow_bytes / args.slow_rate * 2 + 120,
                               timeout=args.slow_bytes / args.slow_rate * 2 + 180)

        threads = [threading.Thread(target=run_slow, args=(k, b)) for k, b in slow_bridges.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for kind, b in slow_bridges.items():
            res[kind]["slow"] = out[kind]
            b.close()
            problems[kind] += b.problems()
            log(f"{kind}: slow target: max RSS {out[kind].get('rss_max_kib')} KiB, "
                f"{fmt_rate(out[kind].get('bytes_per_s', 0))}, ok={out[kind].get('ok')}")

        res["doors"] = run_doors(args, work, socks, target_pids)
        res["gateway"] = run_gateway(args, work, problems)
    finally:
        stop_all()

    elapsed = time.monotonic() - started
    md = render(args, header, res, problems, sizes, elapsed)
    return save(args, md, res, problems, elapsed, work, "")


def save(args, md: str, res: dict, problems: dict, elapsed: float, work: str, suffix: str) -> int:
    os.makedirs(args.results, exist_ok=True)
    name = datetime.datetime.now().strftime("%Y-%m-%d-%H%M") + suffix + ".md"
    path = os.path.join(args.results, name)
    with open(path + ".tmp", "w") as f:
        f.write(md)
    os.replace(path + ".tmp", path)
    with open(os.path.join(args.results, name[:-3] + ".json"), "w") as f:
        json.dump({"results": res, "problems": problems}, f, indent=1, default=str)
    print(md)
    if any(problems.values()) or "⚠" in md:
        log(f"saved {os.path.relpath(path, args.repo)} ({elapsed:.0f} s); problems seen, logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        log(f"saved {os.path.relpath(path, args.repo)} ({elapsed:.0f} s)")
    return 0


def proc_cpu_with_children(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (children it has reaped included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def wait_for_socket(path: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear ({proc.args})")
        time.sleep(0.01)


# systemd's socket proxy (Debian's systemd package), the reference relay of the door and gateway rows.
HAPROXY = shutil.which("haproxy")


def haproxy_version() -> str:
    """`2.6.12`, as `haproxy -v` says it, or `?`."""
    if not HAPROXY:
        return "?"
    text = subprocess.run([HAPROXY, "-v"], capture_output=True, text=True).stdout
    return m.group(1) if (m := re.search(r"version (\S+?)-", text)) else "?"


HAPROXY_VERSION = haproxy_version()
PROXYD = next((p for p in ("/lib/systemd/systemd-socket-proxyd", "/usr/lib/systemd/systemd-socket-proxyd")
               if os.path.exists(p)), None)


def run_doors(args, work: str, socks: dict, target_pids: dict) -> dict:
    """The local door against systemd-socket-proxyd, socat and a direct connection: the same raw
    client pushes --door-bytes one way (into the discard target) and through the echo target;
    CPU is the relay process's, reaped children included (socat forks one per connection)."""
    proxyd = PROXYD
    config = os.path.join(work, "doors.yaml")
    with open(config, "w") as f:
        f.write(f"listen: [unix:{work}/doors-grpc.sock]\nroutes:\n")
        for mode in ("discard", "echo"):
            f.write(f"  {mode}: {{unix: {socks[mode]}, local: unix:{work}/jd-{mode}.sock}}\n")
            f.write(f"  {mode}-rw: {{unix: {socks[mode]}, local: {{address: unix:{work}/jr-{mode}.sock, splice: false}}}}\n")
    relays = {}
    bridge = subprocess.Popen([args.bridge, "serve", "--config", config, "--log-level", "warning"])
    children.append(bridge)
    for mode in ("discard", "echo"):
        wait_for_socket(f"{work}/jd-{mode}.sock", bridge)
        wait_for_socket(f"{work}/jr-{mode}.sock", bridge)
        relays.setdefault("jmp-bridge door (splice)", {})[mode] = (f"{work}/jd-{mode}.sock", bridge)
        relays.setdefault("jmp-bridge door (read/write)", {})[mode] = (f"{work}/jr-{mode}.sock", bridge)
        if proxyd:
            path = f"{work}/px-{mode}.sock"
            p = subprocess.Popen(["systemd-socket-activate", "-l", path, proxyd, socks[mode]],
                                 stderr=subprocess.DEVNULL)
            children.append(p)
            wait_for_socket(path, p)
            relays.setdefault("systemd-socket-proxyd", {})[mode] = (path, p)
        path = f"{work}/sc-{mode}.sock"
        p = subprocess.Popen(["socat", f"UNIX-LISTEN:{path},fork", f"UNIX-CONNECT:{socks[mode]}"])
        children.append(p)
        wait_for_socket(path, p)
        relays.setdefault("socat", {})[mode] = (path, p)
        relays.setdefault("direct Unix socket", {})[mode] = (socks[mode], None)
    out: dict = {}
    for rep in range(args.repeat):
        for name, by_mode in relays.items():
            for mode, (path, proc) in by_mode.items():
                nbytes = args.door_bytes if mode == "discard" else args.door_bytes // 4
                cpu0 = proc_cpu_with_children(proc.pid) if proc else 0.0
                r = subprocess.run([args.targets, "push", path, str(nbytes)], capture_output=True, text=True,
                                   timeout=600)
                time.sleep(0.2)  # let a forking relay reap its child, so its CPU is counted
                cpu = proc_cpu_with_children(proc.pid) - cpu0 if proc else 0.0
                try:
                    run = json.loads(r.stdout)
                except ValueError:
                    run = {"error": (r.stderr or r.stdout).strip()[:200]}
                run["cpu_s"] = cpu
                expected = nbytes if mode == "echo" else 0
                run["ok"] = r.returncode == 0 and run.get("received") == expected
                out.setdefault(name, {}).setdefault(mode, []).append(run)
    summary: dict = {}
    for name, by_mode in out.items():
        for mode, runs in by_mode.items():
            good = sorted((x for x in runs if "seconds" in x), key=lambda x: x["sent"] / x["seconds"])
            median = good[len(good) // 2] if good else {}
            moved = sum(x["sent"] + x.get("received", 0) for x in good)
            entry = {
                "bytes_per_s": median["sent"] / median["seconds"] if median else None,
                "runs_bytes_per_s": [x["sent"] / x["seconds"] for x in good],
                "cpu_per_gib": sum(x["cpu_s"] for x in good) / (moved / GIB) if moved else None,
                "ok": all(x.get("ok") for x in runs),
                "received": [x.get("received") for x in runs],
                "error": "; ".join(str(x["error"]) for x in runs if "error" in x),
            }
            summary.setdefault(name, {})[mode] = entry
            log(f"door {name} {mode}: {fmt_rate(entry['bytes_per_s'] or 0)}, "
                f"{(entry['cpu_per_gib'] or 0):.2f} CPU s/GiB, ok={entry['ok']} received={entry['received']}")
    for name, by_mode in relays.items():
        for mode, (path, proc) in by_mode.items():
            if proc and proc is not bridge and proc.poll() is None:
                stop(proc)
    stop(bridge)
    return summary


# ---- Metrics on and off (issue 20): counting must not slow the data path ----------------------

def metrics_runs(args) -> int:
    """Runs per condition for the metrics rows: at least --repeat and 5, odd (the median is a run)."""
    n = max(args.repeat, 5)
    return n if n % 2 else n + 1


def chance_beyond(n: int) -> float:
    """With n runs (odd) of each of two conditions that do not differ, the probability that the
    median of one condition's runs lies beyond the other's range on a given side: the first
    (n + 1) / 2 of the 2n runs in sorted order all belong to the first condition."""
    p = 1.0
    for i in range((n + 1) // 2):
        p *= (n - i) / (2 * n - i)
    return p


# (key, label, which runs, value of one run, higher is better, format of a value)
METRICS_ROWS = [
    ("raw-oneway-rate", "one-way 64 KiB, throughput (raw HTTP/2 client)", "raw-oneway",
     lambda r: r.get("bytes_per_s"), True, "rate"),
    ("raw-oneway-cpu", "one-way 64 KiB, bridge CPU per GiB (raw HTTP/2 client)", "raw-oneway",
     lambda r: r["bridge_cpu_s"] / (r["moved"] / GIB) if r.get("moved") and "bridge_cpu_s" in r else None,
     False, "cpu"),
    ("oneway-rate", "one-way 64 KiB, throughput (grpc C++ client)", "oneway",
     lambda r: r.get("bytes_per_s"), True, "rate"),
    ("oneway-cpu", "one-way 64 KiB, bridge CPU per GiB (grpc C++ client)", "oneway",
     lambda r: r["bridge_cpu_s"] / (r["moved"] / GIB) if r.get("moved") and "bridge_cpu_s" in r else None,
     False, "cpu"),
    ("rawlatency-p50", "1-byte round trip p50 (raw HTTP/2 client)", "rawlatency", lambda r: r.get("p50_us"), False, "us"),
    ("rawlatency-p99", "1-byte round trip p99 (raw HTTP/2 client)", "rawlatency", lambda r: r.get("p99_us"), False, "us"),
]


def run_metrics(args, work: str, socks: dict, target_pids: dict, problems: dict) -> dict:
    """The 64 KiB one-way rows (raw and grpc C++ client) and the 1-byte round trips (raw client)
    against two fresh jmp-bridges with the same routes, metrics off and on, the runs interleaved
    (off, on, off, on, ...) so that drift hits both; the on bridge is scraped once a second while
    it is measured. Raw runs and per-row statistics; see render_metrics for the rule."""
    problems.setdefault("metrics", [])
    n = metrics_runs(args)
    routes = {"echo": socks["echo"], "discard": socks["discard"]}
    runs: dict = {key: {"off": [], "on": []} for key in ("raw-oneway", "oneway", "rawlatency")}
    bridges: dict = {}
    scraper = None
    out: dict = {"runs_each": n, "runs": runs}
    try:
        bridges["off"] = Bridge("jmp-bridge", args, work, routes, "metrics-off")
        bridges["on"] = Bridge("jmp-bridge", args, work, routes, "metrics-on", metrics=True)
        out["metrics_address"] = f"tcp:127.0.0.1:{bridges['on'].metrics_port}"
        scraper = Scraper(bridges["on"].metrics_port)
        log(f"metrics on/off: {n} runs each, interleaved; the on bridge serves {out['metrics_address']}")
        time.sleep(0.5)
        for rep in range(n):
            for key in runs:
                for cond in ("off", "on"):
                    b = bridges[cond]
                    with scraper.scraping() if cond == "on" else contextlib.nullcontext():
                        if key == "raw-oneway":
                            r = raw_client(args.rawclient, b, "--mode", "oneway", "--size", 65536,
                                           "--seconds", args.seconds, "--route", "discard",
                                           timeout=args.seconds + 120, target_pid=target_pids["discard"])
                        elif key == "oneway":
                            r = client(args, b, "--mode", "oneway", "--size", 65536, "--seconds", args.seconds,
                                       "--batch", args.batch, "--route", "discard",
                                       "--timeout", args.seconds + 120, target_pid=target_pids["discard"])
                        else:
                            r = raw_latency(args.rawclient, b, args.iters)
                    runs[key][cond].append(r)
            last = {key: {c: runs[key][c][-1] for c in ("off", "on")} for key in runs}
            log(f"metrics on/off, run {rep + 1}/{n} (off / on): raw one-way "
                f"{(last['raw-oneway']['off'].get('bytes_per_s') or 0) / 1e6:,.0f} / "
                f"{(last['raw-oneway']['on'].get('bytes_per_s') or 0) / 1e6:,.0f} MB/s, grpc C++ one-way "
                f"{(last['oneway']['off'].get('bytes_per_s') or 0) / 1e6:,.0f} / "
                f"{(last['oneway']['on'].get('bytes_per_s') or 0) / 1e6:,.0f} MB/s, RTT p50 "
                f"{last['rawlatency']['off'].get('p50_us')} / {last['rawlatency']['on'].get('p50_us')} µs, p99 "
                f"{last['rawlatency']['off'].get('p99_us')} / {last['rawlatency']['on'].get('p99_us')} µs; "
                f"{scraper.scrapes} scrapes so far")
        out["scrapes"] = scraper.scrapes
        out["scrape_failures"] = list(scraper.bad)
        out["scrape_ms"] = sorted(round(x, 2) for x in scraper.durations_ms)
        # One more scrape after the runs: the byte counter against what the clients moved.
        scraper.scrape()
        out["counted_to_targets"] = scraper.bytes_to_targets
        out["moved_one_way_on"] = sum(x.get("moved", 0) for key in ("raw-oneway", "oneway")
                                      for x in runs[key]["on"] if x.get("ok"))
        out["final_scrape_failed"] = scraper.bad[len(out["scrape_failures"]):]
    finally:
        if scraper:
            scraper.close()
        for b in bridges.values():
            b.close()
            problems["metrics"] += b.problems()

    rows: dict = {}
    for key, label, which, value, higher_better, _ in METRICS_ROWS:
        row: dict = {"label": label}
        for cond in ("off", "on"):
            rs = runs[which][cond]
            vals = [v for v in (value(x) for x in rs if x.get("ok")) if v is not None]
            med = statistics.median(vals) if vals else None
            row[cond] = {"values": vals, "failed": len(rs) - len(vals), "median": med,
                         "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                         "spread": (max(vals) - min(vals)) / med if vals and med else None}
        off, on = row["off"], row["on"]
        if off["median"] is None or on["median"] is None:
            row["verdict"] = "failed"
        else:
            row["change"] = (on["median"] - off["median"]) / off["median"]
            if off["min"] <= on["median"] <= off["max"]:
                row["verdict"] = "within noise"
            elif (on["median"] > off["max"]) == higher_better:
                row["verdict"] = "better"
            else:
                row["verdict"] = "outside noise"
        rows[key] = row
        log(f"metrics on/off: {label}: off {off['median']} on {on['median']} ({row['verdict']}); "
            f"spread off {off['spread']} on {on['spread']}")
    out["rows"] = rows
    log(f"metrics on/off: {out['scrapes']} scrapes during the on runs, {len(out['scrape_failures'])} failed; "
        f"counter to_target {out['counted_to_targets']} B, one-way runs moved {out['moved_one_way_on']} B")
    return out


def render_metrics(args, M: dict) -> list[str]:
    n = M.get("runs_each", 0)
    rows = M.get("rows", {})

    def fmt(v, kind):
        if v is None:
            return "–"
        return fmt_rate(v) if kind == "rate" else f"{v:.2f} s" if kind == "cpu" else f"{v:.0f} µs"

    def fmt_range(d, kind):
        if d.get("min") is None:
            return "–"
        if kind == "rate":
            return f"{d['min'] / 1e6:,.0f}–{d['max'] / 1e6:,.0f} MB/s"
        return f"{d['min']:.2f}–{d['max']:.2f} s" if kind == "cpu" else f"{d['min']:.0f}–{d['max']:.0f} µs"

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f} %"

    verdicts = {"within noise": "within noise", "better": "on better than every off run",
                "outside noise": "**outside noise** (on worse than every off run)", "failed": "**failed**"}
    out = ["", f"**Metrics on and off** (issue 20: counting must not slow the data path). Two fresh jmp-bridges with the same routes, one "
           f"without metrics and one with `--metrics tcp:127.0.0.1:0` ({M.get('metrics_address', '?')}), "
           f"scraped (`GET /metrics`, as Prometheus would) once a second while it is measured; {n} runs of each, "
           f"interleaved (off, on, off, on, … for each measurement). One-way: {args.seconds:g} s of 64 KiB "
           f"messages into the discard target (CPU = the bridge's utime+stime per GiB, per run); round trips: "
           f"{args.iters} per run after 500 warm-up, raw HTTP/2 client. Each figure is the median of its runs.", "",
           "| measurement | metrics off | metrics on | on vs off | noise band off / on | off runs' range | |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for key, label, _, _, _, kind in METRICS_ROWS:
        r = rows.get(key)
        if not r:
            continue
        off, on = r["off"], r["on"]
        flag = " ⚠" if off["failed"] or on["failed"] else ""
        change = "–" if r.get("change") is None else f"{100 * r['change']:+.1f} %"
        out.append(f"| {label}{flag} | {fmt(off['median'], kind)} | {fmt(on['median'], kind)} | {change} | "
                   f"{pct(off['spread'])} / {pct(on['spread'])} | {fmt_range(off, kind)} | "
                   f"{verdicts[r['verdict']]} |")
    slower = [rows[k]["label"] for k in rows if rows[k]["verdict"] in ("outside noise", "failed")]
    p = chance_beyond(n) if n % 2 else None
    out += ["", "Rule: the noise band of a condition is the spread of its runs, (max − min) / median. The "
            "difference is within noise when the median of the on runs lies within the range (min–max) of the "
            "off runs; an on median better than every off run is no slowdown either. "
            + (f"With {n} runs each and no real difference, the on median lands beyond the worse end of the off "
               f"range by chance with probability {100 * p:.0f} % per row, so a single row just outside is a "
               f"reason to run again (`BENCH_ONLY=metrics`, or more runs with `BENCH_REPEAT`), not proof."
               if p else "").rstrip(),
            "",
            "Verdict (metrics must not slow the data path measurably): "
            + ("met: every row within noise or better with metrics on." if not slower and rows else
               "**missed**: " + "; ".join(slower) + "." if rows else "**not measured**.")]
    wide = [f"{rows[k]['label']} ({100 * rows[k]['off']['spread']:.0f} %)" for k in rows
            if (rows[k]["off"].get("spread") or 0) > 0.25]
    if wide:
        out += ["", "**Wide noise bands** with metrics off: " + ", ".join(wide) + ". A wide band makes \"within "
                "noise\" easy and says little; the machine was probably busy (run again when it is idle)."]
    runs_txt = []
    for key, label, _, _, _, kind in METRICS_ROWS:
        r = rows.get(key)
        if r:
            show = (lambda v: f"{v / 1e6:,.0f}") if kind == "rate" else \
                   (lambda v: f"{v:.2f}") if kind == "cpu" else (lambda v: f"{v:.0f}")
            unit = {"rate": "MB/s", "cpu": "s/GiB", "us": "µs"}[kind]
            runs_txt.append(f"{label}: off {', '.join(map(show, r['off']['values']))}; "
                            f"on {', '.join(map(show, r['on']['values']))} {unit}")
    out += ["", "Runs, in the order measured: " + ". ".join(runs_txt) + "."]
    fails = M.get("scrape_failures", [])
    ms = M.get("scrape_ms", [])
    scr = (f"{M.get('scrapes', 0)} scrapes of /metrics during the on runs"
           + (f", every one 200 with `{Scraper.CHECK}`" if not fails else f", ⚠ {len(fails)} failed: {'; '.join(fails[:3])}")
           + (f"; a scrape took {statistics.median(ms):.1f} ms (median), {ms[-1]:.1f} ms at most" if ms else ""))
    counted, moved = M.get("counted_to_targets"), M.get("moved_one_way_on", 0)
    if counted is None:
        scr += f". ⚠ The scrape after the runs had no to_target series {M.get('final_scrape_failed') or ''}"
    else:
        scr += (f". After the runs the on bridge's `{Scraper.CHECK}{{direction=\"to_target\"}}` summed to "
                f"{counted / MIB:,.1f} MiB; its one-way runs moved {moved / MIB:,.1f} MiB"
                + (" (the round trips add a few KiB)" if counted >= moved else
                   " ⚠ (the counter is short of what the clients moved)"))
    out += ["", scr + "."]
    return out


def render_only(part: str, title: str, render, args, header, res, problems, elapsed) -> str:
    """The page of a ``--only PART`` run: its title, the machine header and ``render``'s section."""
    out = [f"# jmp-bridge benchmark, {title} only (--only {part}), "
           f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}", "", header, f"- run time: {elapsed:.0f} s"]
    out += render(args, res.get(part, {}))
    bad = [f"- {part} log: `{line[:300]}`" for line in problems.get(part, [])[:10]]
    if bad:
        out += ["", "Problems seen during the run:", ""] + bad
    return "\n".join(out) + "\n"


# ---- The exporter gateway (issue 18): relay throughput and stream set-up ----------------------

class Peer:
    """A helper process whose stdout lines are collected by a thread (the controller and router
    stub, the exporter's Listen client)."""

    def __init__(self, cmd: list[str], log_path: str, stdin=False):
        self.log_file = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log_file, text=True, bufsize=1)
        children.append(self.proc)
        self.lines: list[list[str]] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.log_file.write(line)
            with self.cond:
                self.lines.append(line.split())
                self.cond.notify_all()
        with self.cond:
            self.lines.append(["<eof>"])
            self.cond.notify_all()

    def wait_for(self, pred, timeout=30.0) -> list[str]:
        """The first line (consumed) for which pred(words) holds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, words in enumerate(self.lines):
                    if words and pred(words):
                        return self.lines.pop(i)
                    if words == ["<eof>"]:
                        raise RuntimeError(f"{self.proc.args[:3]} ended; see {self.log_file.name}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"timed out waiting in {self.log_file.name}")
                self.cond.wait(left)

    def take_all(self, first: str) -> list[list[str]]:
        with self.cond:
            got = [w for w in self.lines if w and w[0] == first]
            self.lines = [w for w in self.lines if not (w and w[0] == first)]
            return got

    def send(self, line: str):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self):
        stop(self.proc)
        self.thread.join(timeout=3)
        self.log_file.close()


class Gateway:
    """jmp-bridge with only a gateway: section; .addr/.pid as Bridge's, for client()."""

    def __init__(self, args, work: str, tag: str, controller: str, tls: tuple[str, str] | None,
                 idle_timeout: str | None = None, plain_controller: bool = False):
        """With `tls`, the listener, the controller and the routers use TLS with that certificate;
        `plain_controller` keeps the controller plaintext (the relay rows' controller)."""
        self.control = os.path.join(work, f"gw-control-{tag}.sock")
        config = os.path.join(work, f"gateway-{tag}.yaml")
        with open(config, "w") as f:
            if tls:
                cert, key = tls
                f.write(f"gateway:\n  listen: {{address: 'tcp:127.0.0.1:0', tls: {{cert: {cert}, key: {key}}}}}\n")
                if plain_controller:
                    f.write(f"  controller: {{endpoint: '{controller}', insecure: true}}\n  router: {{ca: {cert}}}\n")
                else:
                    f.write(f"  controller: {{endpoint: '{controller}', ca: {cert}}}\n")
            else:
                f.write("gateway:\n  listen: {address: 'tcp:127.0.0.1:0', insecure: true}\n"
                        f"  controller: {{endpoint: '{controller}', insecure: true}}\n")
            if idle_timeout:
                f.write(f"  idle-timeout: {idle_timeout}\n")
            f.write(f"control: unix:{self.control}\n")
        self.log_path = os.path.join(work, f"gateway-{tag}.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([args.bridge, "serve", "--config", config], stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=self.log_file)
        children.append(self.proc)
        deadline = time.monotonic() + 30
        self.port = self.advertise = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            if os.path.exists(self.control):
                reply = subprocess.run([args.bridge, "status", "--control", self.control],
                                       capture_output=True, text=True, timeout=10).stdout
                if m := re.search(r"^gateway=tcp:127\.0\.0\.1:(\d+) advertise=(\S+)", reply, re.M):
                    self.port, self.advertise = int(m.group(1)), m.group(2)
                    break
            time.sleep(0.05)
        if self.port is None:
            stop(self.proc)
            self.log_file.close()
            raise RuntimeError(f"gateway did not start; see {self.log_path}:\n" + open(self.log_path).read()[-2000:])
        self.args = args

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def status(self) -> str:
        return subprocess.run([self.args.bridge, "status", "--control", self.control],
                              capture_output=True, text=True, timeout=10).stdout

    def wait_router_connections_gone(self, within: float = 10.0) -> None:
        """Until `status` lists no router upstream: its idle-timeout closed and forgot them all."""
        deadline = time.monotonic() + within
        while re.search(r"^upstream=\S+ role=router ", self.status(), re.M):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway kept its router connections for {within:g} s:\n{self.status()}")
            time.sleep(0.05)

    def close(self):
        stop(self.proc)
        self.log_file.close()

    def problems(self) -> list[str]:
        with open(self.log_path) as f:
            return [line.rstrip() for line in f if re.search(r"\b(warning|error|critical)\b", line)]


def make_cert(work: str) -> tuple[str, str]:
    """A throwaway P-256 certificate for 127.0.0.1 and the netem namespace's address (made once
    per run)."""
    cert, key = os.path.join(work, "gw.crt"), os.path.join(work, "gw.key")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "30", "-subj", "/CN=localhost", "-addext",
                    f"subjectAltName=IP:127.0.0.1,IP:{NETEM_FAR},DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


NETEM_NS, NETEM_NEAR, NETEM_FAR = "jmpbench-cluster", "10.251.0.1", "10.251.0.2"


def netem_up(delay_ms: float) -> str | None:
    """A network namespace for the cluster (controller and router) behind a veth pair with
    `netem delay` on both ends; None when set up, else why it cannot be (nothing left behind)."""
    if os.geteuid() != 0:
        return "needs root (network namespace and tc)"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "iproute2 (ip, tc) not installed"
    subprocess.run(["modprobe", "sch_netem"], capture_output=True)
    netem_down()  # a namespace left by an interrupted run
    steps = [["ip", "netns", "add", NETEM_NS],
             ["ip", "link", "add", "jmpb0", "type", "veth", "peer", "name", "jmpb1"],
             ["ip", "link", "set", "jmpb1", "netns", NETEM_NS],
             ["ip", "addr", "add", f"{NETEM_NEAR}/24", "dev", "jmpb0"],
             ["ip", "link", "set", "jmpb0", "up"],
             ["ip", "-n", NETEM_NS, "addr", "add", f"{NETEM_FAR}/24", "dev", "jmpb1"],
             ["ip", "-n", NETEM_NS, "link", "set", "jmpb1", "up"],
             ["ip", "-n", NETEM_NS, "link", "set", "lo", "up"]]
    if delay_ms > 0:
        steps += [["tc", "qdisc", "add", "dev", "jmpb0", "root", "netem", "delay", f"{delay_ms / 2:g}ms"],
                  ["tc", "-n", NETEM_NS, "qdisc", "add", "dev", "jmpb1", "root", "netem", "delay", f"{delay_ms / 2:g}ms"]]
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True)
        if r.returncode != 0:
            netem_down()
            why = f"`{' '.join(step)}` failed: {(r.stderr or r.stdout).strip()}"
            if "netem" in step:
                why += " — this kernel has no sch_netem (CONFIG_NET_SCH_NETEM)"
            return why
    return None


def netem_down() -> None:
    subprocess.run(["ip", "link", "del", "jmpb0"], capture_output=True)
    subprocess.run(["ip", "netns", "del", NETEM_NS], capture_output=True)


class TcpRelay:
    """A byte relay on loopback TCP in front of the sink, for one run: systemd-socket-proxyd
    (splice(2), the kernel's zero-copy path) or socat (read/write through 256 KiB, as any relay
    that looks at the bytes must); with `tls` (certificate, key; the sink's CA is the same
    certificate), HAProxy in TCP mode, which ends TLS from the client and opens TLS to the sink,
    ALPN h2 both ways as gRPC needs, on one thread. None parses HTTP/2: what the first two cost
    is the floor for a TCP-to-TCP relay on this machine; HAProxy is a TLS-to-TLS relay to compare
    with. .addr/.pid as Bridge's, for client()."""

    def __init__(self, kind: str, upstream: str, tls: tuple[str, str] | None = None, work: str = ""):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.addr = f"127.0.0.1:{self.port}"
        if kind == "haproxy":
            if not tls:
                raise ValueError("the haproxy relay is the TLS one")
            pem = os.path.join(work, "haproxy.pem")
            with open(pem, "w") as f:
                f.write(open(tls[0]).read() + open(tls[1]).read())
            config = os.path.join(work, "haproxy.cfg")
            with open(config, "w") as f:
                f.write("global\n  nbthread 1\n  tune.bufsize 262144\n"
                        "defaults\n  mode tcp\n  timeout connect 10s\n  timeout client 600s\n  timeout server 600s\n"
                        f"frontend relay\n  bind {self.addr} ssl crt {pem} alpn h2\n  default_backend sink\n"
                        # The gateway's TLS library (BoringSSL) asks for AES-128-GCM first; OpenSSL,
                        # HAProxy's, for AES-256-GCM: the same cipher on the sink's leg for both.
                        f"backend sink\n  server sink {upstream} ssl ca-file {tls[0]} alpn h2 "
                        "ciphersuites TLS_AES_128_GCM_SHA256\n")
            cmd = [HAPROXY, "-f", config, "-db"]
        elif kind == "proxyd":
            cmd = ["systemd-socket-activate", "-l", self.addr, PROXYD, upstream]
        else:
            cmd = ["socat", "-b", "262144", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr", f"TCP:{upstream}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children.append(self.proc)
        deadline = time.monotonic() + 20
        while not self.listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd)} did not listen")
            time.sleep(0.01)

    def listening(self) -> bool:
        """The port is in LISTEN state (0A) in /proc/net/tcp: no probe connection to relay."""
        with open("/proc/net/tcp") as f:
            return any(line.split()[1].endswith(f":{self.port:04X}") and line.split()[3] == "0A"
                       for line in f.readlines()[1:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        stop(self.proc)
        if self.proc in children:
            children.remove(self.proc)


def gateway_relay(args, work: str, problems: dict) -> dict:
    """Relay alone: the load client → gateway → grpc C++ sink (playing the router), against the
    same load straight into the sink; one token (one Listen response) per run. Plaintext HTTP/2
    on both legs, then TLS on both, as in production (the exporter's leg to the gateway and the
    gateway's to the router), each beside byte relays that do not parse HTTP/2."""
    out: dict = {}
    cert, key = make_cert(work)
    sink = Bridge("sink", args, work, {}, "gw")
    sink_tls = Bridge("sink", args, work, {}, "gw-tls", tls=(cert, key))
    controller = Peer([args.python, os.path.join(args.repo, "bench", "gateway_controller.py"),
                       "--listen", "127.0.0.1:0"], os.path.join(work, "gw-controller-relay.log"), stdin=True)
    gateways: list = []
    exporters: list = []
    try:
        caddr = controller.wait_for(lambda w: w[0] == "controller")[1]
        controller.wait_for(lambda w: w[0] == "ready")
        gw = Gateway(args, work, "relay", caddr, None)
        gw_tls = Gateway(args, work, "relay-tls", caddr, (cert, key), plain_controller=True)
        gateways += [gw, gw_tls]
        # The exporter's Listen call, through the gateway: the gateway sees every response.
        for lease, via, ca in (("relay", gw, []), ("relay-tls", gw_tls, ["--ca", cert])):
            exporters.append(Peer([args.python, os.path.join(args.repo, "bench", "gateway_exporter.py"),
                                   "--controller", via.addr, "--lease", lease, *ca],
                                  os.path.join(work, f"gw-exporter-{lease}.log")))
            controller.wait_for(lambda w: w[:2] == ["listen", lease])
        rewritten: list[str] = []
        used: dict[str, list[str]] = {}

        def token(lease: str, exporter, via, router) -> str:
            controller.send(f"send {lease} {router.addr}")
            sent = controller.wait_for(lambda w: w[0] == "sent")[1]
            _, tok, endpoint, _ = exporter.wait_for(lambda w: w[0] == "response" and w[1] == sent)
            rewritten.append(endpoint)
            used.setdefault(lease, []).append(tok)
            if endpoint != via.advertise:
                raise RuntimeError(f"the gateway handed out router_endpoint {endpoint}, not its own {via.advertise}")
            return tok

        # The floor: byte relays that do not parse HTTP/2, on the same two TCP legs.
        floors = [k for k in ("proxyd", "socat") if k != "proxyd" or PROXYD]
        tls_relays = ["haproxy"] if HAPROXY else []
        for mode in ("oneway", "echo"):
            runs = {"gateway": [], "direct": [], **{k: [] for k in floors},
                    "gateway-tls": [], "direct-tls": [], **{f"{k}-tls": [] for k in tls_relays}}
            route = "discard" if mode == "oneway" else "echo"
            load = ["--mode", mode, "--size", 65536, "--seconds", args.seconds, "--batch", args.batch,
                    "--route", route, "--timeout", args.seconds + 120]
            tls_load = load + ["--tls-ca", cert]
            for rep in range(args.repeat):
                runs["gateway"].append(client(args, gw, *load, "--token", token("relay", exporters[0], gw, sink),
                                              target_pid=sink.pid))
                runs["direct"].append(client(args, sink, *load, target_pid=sink.pid))
                for kind in floors:
                    relay = TcpRelay(kind, sink.addr)
                    try:
                        runs[kind].append(client(args, relay, *load, target_pid=sink.pid))
                    finally:
                        relay.close()
                runs["gateway-tls"].append(client(args, gw_tls, *tls_load, "--token",
                                                  token("relay-tls", exporters[1], gw_tls, sink_tls),
                                                  target_pid=sink_tls.pid))
                runs["direct-tls"].append(client(args, sink_tls, *tls_load, target_pid=sink_tls.pid))
                for kind in tls_relays:
                    relay = TcpRelay(kind, sink_tls.addr, tls=(cert, key), work=work)
                    try:
                        runs[f"{kind}-tls"].append(client(args, relay, *tls_load, target_pid=sink_tls.pid))
                    finally:
                        relay.close()
            for path in runs:
                r = summarize_runs(runs[path])
                out[f"{path}-{mode}"] = r
                log_throughput(f"gateway relay: {path} {mode} 64 KiB", r)
        if not HAPROXY:
            out["haproxy_missing"] = True
        # A token works once: the plaintext gateway's last one again must be refused, never reach
        # the sink.
        replay = client(args, gw, "--mode", "oneway", "--size", 65536, "--seconds", 0.2, "--route", "discard",
                        "--token", used["relay"][-1], "--timeout", 10)
        out["replay_status"] = replay.get("status")
        out["rewritten"] = sorted(set(rewritten))
        out["advertise"] = gw.advertise
        out["status"] = gw.status().strip()
        log(f"gateway relay: replayed token -> status {replay.get('status')} ({replay.get('message')}); "
            f"router_endpoint handed out {out['rewritten']}, advertised {gw.advertise}, {gw_tls.advertise}")
        # The replayed token's refusal is the one warning the run asks for.
        for via in gateways:
            refusals = [line for line in via.problems() if "refused a router stream" in line]
            problems["gateway"] += [line for line in via.problems() if "refused a router stream" not in line]
            problems["gateway"] += refusals[1:] if via is gw else refusals
    finally:
        for p in exporters + gateways + [controller, sink, sink_tls]:
            if p:
                p.close()
    return out


def setup_latency(args, work: str, tag: str, cert: str, key: str, far: str, prefix: list[str],
                  delay_rtt_ms: float | None = None) -> dict:
    """Stream set-up, TLS everywhere: the controller sends a ListenResponse; time until the first
    client byte (written by the stub router at once) reaches the exporter's session socket.
    Stock: the exporter's Listen goes to the controller and each stream opens a fresh TLS channel
    to the router. Gateway: Listen and streams go to the gateway (TLS on loopback), which relays on
    its pooled connection. Gateway-cold: a second gateway with `idle-timeout: 1s`, each stream sent
    once it has closed its router connections, so that every stream's router connection is made
    anew from the ListenResponse on (the first stream after a quiet spell; its new-connection
    count shows it was). `far` is the
    cluster's address, `prefix` runs the cluster's process (in the netem namespace); `delay_rtt_ms` puts bench/delay_relay.py in front of the controller and
    the router instead (the same round trip added in user space, for kernels without netem)."""
    py = os.path.join(args.repo, "bench")
    cluster = Peer(prefix + [args.python, f"{py}/gateway_controller.py", "--listen", f"{far}:0",
                             "--router-listen", f"{far}:0", "--cert", cert, "--key", key],
                   os.path.join(work, f"gw-cluster-{tag}.log"), stdin=True)
    gw = cold = delay = None
    exporters = {}
    try:
        caddr = cluster.wait_for(lambda w: w[0] == "controller")[1]
        raddr = cluster.wait_for(lambda w: w[0] == "router")[1]
        cluster.wait_for(lambda w: w[0] == "ready")
        if delay_rtt_ms is not None:
            # Both paths reach the cluster only through the delay: the stock exporter's Listen and
            # router channels, the gateway's controller calls and pooled router connection.
            delay = Peer([args.python, f"{py}/delay_relay.py", "--rtt-ms", f"{delay_rtt_ms:g}", caddr, raddr],
                         os.path.join(work, f"gw-delay-{tag}.log"), stdin=True)
            caddr = delay.wait_for(lambda w: w[:2] == ["relay", caddr])[2]
            raddr = delay.wait_for(lambda w: w[:2] == ["relay", raddr])[2]
            delay.wait_for(lambda w: w[0] == "ready")
        gw = Gateway(args, work, f"setup-{tag}", caddr, (cert, key))
        cold = Gateway(args, work, f"setup-{tag}-cold", caddr, (cert, key), idle_timeout="1s")
        for path, endpoint in (("stock", caddr), ("gateway", gw.addr), ("gateway-cold", cold.addr)):
            exporters[path] = Peer([args.python, f"{py}/gateway_exporter.py", "--controller", endpoint,
                                    "--lease", path, "--ca", cert, "--connect"],
                                   os.path.join(work, f"gw-exporter-{tag}-{path}.log"))
            cluster.wait_for(lambda w: w[:2] == ["listen", path])
        seen_peers: set[str] = set()
        runs: dict = {"stock": [], "gateway": [], "gateway-cold": []}
        errors = []
        for i in range(args.setup_warmup + args.setup_runs):
            for path in ("stock", "gateway", "gateway-cold"):
                if path == "gateway-cold":
                    cold.wait_router_connections_gone()
                cluster.send(f"send {path} {raddr}")
                _, tok, t_sent = cluster.wait_for(lambda w: w[0] == "sent")
                try:
                    words = exporters[path].wait_for(lambda w: w[0] in ("first-byte", "error") and w[1] == tok, 20)
                except RuntimeError as e:
                    errors.append(f"{path}: {e}")
                    continue
                if words[0] == "error":
                    errors.append(f"{path}: {' '.join(words[2:])}")
                    continue
                stream = cluster.wait_for(lambda w: w[0] == "stream" and w[2] == tok, 10)
                response = exporters[path].wait_for(lambda w: w[0] == "response" and w[1] == tok, 10)
                new_conn = stream[1] not in seen_peers
                seen_peers.add(stream[1])
                if i >= args.setup_warmup:
                    runs[path].append({"ms": (int(words[2]) - int(t_sent)) / 1e6, "new_connection": new_conn,
                                       "to_router_ms": (int(stream[3]) - int(t_sent)) / 1e6,
                                       "listen_ms": (int(response[3]) - int(t_sent)) / 1e6})
                time.sleep(0.05)
        out: dict = {"errors": errors}
        for path, rs in runs.items():
            ms = sorted(x["ms"] for x in rs)
            out[path] = {
                "runs": len(rs), "all_ms": [round(x, 2) for x in ms],
                "p50_ms": statistics.median(ms) if ms else None,
                "p90_ms": ms[min(len(ms) - 1, int(0.9 * (len(ms) - 1) + 0.5))] if ms else None,
                "new_connections_per_stream": sum(x["new_connection"] for x in rs) / len(rs) if rs else None,
                # Of that, until the router has the exporter's stream (the rest is the byte's way back).
                "to_router_p50_ms": statistics.median(x["to_router_ms"] for x in rs) if rs else None,
                # Of that, until the ListenResponse reached the exporter.
                "listen_p50_ms": statistics.median(x["listen_ms"] for x in rs) if rs else None,
            }
            log(f"stream set-up ({tag}) {path}: p50 {out[path]['p50_ms']} ms p90 {out[path]['p90_ms']} ms, "
                f"new router connections per stream {out[path]['new_connections_per_stream']}")
        if errors:
            log(f"stream set-up ({tag}) errors: {errors[:3]}")
        return out
    finally:
        for p in list(exporters.values()) + [gw, cold, delay, cluster]:
            if p:
                p.close()


def run_gateway(args, work: str, problems: dict) -> dict:
    problems.setdefault("gateway", [])
    G: dict = {"relay": gateway_relay(args, work, problems)}
    cert, key = make_cert(work)
    G["setup"] = {"loopback": setup_latency(args, work, "loopback", cert, key, "127.0.0.1", [])}
    # Again with every vCPU kept busy at the lowest priority: the gateway path wakes one process
    # more per message (the gateway), and on an idle VM each wake-up of a halted vCPU goes through
    # the hypervisor; what is left with them awake is the processes' own time.
    with vcpus_awake():
        G["setup"]["loopback-awake"] = setup_latency(args, work, "loopback-awake", cert, key, "127.0.0.1", [])
    why = netem_up(args.netem_delay_ms)
    if why:
        G["setup"]["netem_unavailable"] = why
        log(f"stream set-up with added latency: no netem ({why}); the same round trip added in user space")
        G["setup"]["delay"] = setup_latency(args, work, "delay", cert, key, "127.0.0.1", [],
                                            delay_rtt_ms=args.netem_delay_ms)
        G["setup"]["delay"]["delay_ms"] = args.netem_delay_ms
    else:
        try:
            G["setup"]["netem"] = setup_latency(args, work, "netem", cert, key, NETEM_FAR,
                                                ["ip", "netns", "exec", NETEM_NS])
            G["setup"]["netem"]["delay_ms"] = args.netem_delay_ms
        finally:
            netem_down()
    return G


def render_gateway(args, G: dict) -> list[str]:
    R, S = G.get("relay", {}), G.get("setup", {})

    def rate(r):
        return fmt_rate(r["bytes_per_s"]) + ("" if r.get("ok") else " ⚠") if r.get("bytes_per_s") else "failed"

    def met(ok):
        return "met" if ok else "**missed**"

    out = ["", "Exporter gateway (issue 18). Relay alone: the same load client, one stream of 64 KiB frames, "
           "through the gateway (`gateway:` section, plaintext HTTP/2 both sides, the token from a Listen "
           "response the gateway rewrote) into a grpc C++ sink playing the router, against the same load "
           f"straight into the sink; median of {args.repeat} runs of {args.seconds:g} s, alternating; CPU = the "
           "gateway process (jmp-bridge), both directions counted for echo:", "",
           "| measurement | through the gateway | direct to the sink | gateway vs direct | goal | |",
           "|---|---:|---:|---:|---|---|"]
    for mode, label in (("oneway", "one-way"), ("echo", "echo")):
        a, b = R.get(f"gateway-{mode}", {}), R.get(f"direct-{mode}", {})
        x, y = a.get("bytes_per_s"), b.get("bytes_per_s")
        out.append(f"| {label} 64 KiB frames | {rate(a)} | {rate(b)} | {x / y:.2f}× |" if x and y else
                   f"| {label} 64 KiB frames | {rate(a)} | {rate(b)} | – |")
        out[-1] += f" ≥ 0.9× direct (costs ≤ 10 %) | {met(bool(x and y and x >= 0.9 * y and a.get('ok')))} |"
    for mode, label in (("oneway", "one-way"), ("echo", "echo")):
        c = R.get(f"gateway-{mode}", {}).get("cpu_per_gib")
        out.append(f"| gateway CPU per GiB, {label} 64 KiB | {c:.2f} s | – | | ≤ 0.3 s | {met(c <= 0.3)} |"
                   if c is not None else f"| gateway CPU per GiB, {label} 64 KiB | – | – | | ≤ 0.3 s | **missed** |")
    out += ["", f"Runs (MB/s): " + "; ".join(
        f"{k} " + ", ".join(f"{v / 1e6:,.0f}" if v else "–" for v in R[k]["runs_bytes_per_s"])
        for k in ("gateway-oneway", "direct-oneway", "gateway-echo", "direct-echo") if k in R)
        + ". CPU as a share of one core over the runs (" + str(os.cpu_count()) + " cores in all), client / gateway / sink: "
        + "; ".join(f"{k} {100 * R[k]['all_client_cpu_s'] / (R[k]['all_seconds'] or 1):.0f}% / "
                    + (f"{100 * R[k]['all_bridge_cpu_s'] / (R[k]['all_seconds'] or 1):.0f}%" if k.startswith("gateway") else "–")
                    + f" / {100 * R[k]['all_target_cpu_s'] / (R[k]['all_seconds'] or 1):.0f}%"
                    for k in ("gateway-oneway", "direct-oneway", "gateway-echo", "direct-echo") if k in R)
        + f". Every router_endpoint the exporter got was the gateway's ({', '.join(R.get('rewritten', []))}); "
        f"a token used a second time ended with status {R.get('replay_status')} (16 = UNAUTHENTICATED)."]
    floors = [(k, label) for k, label in (("proxyd", "systemd-socket-proxyd (splice, zero-copy)"),
                                         ("socat", "socat -b 262144 (read/write)"))
              if f"{k}-oneway" in R]
    if floors:
        out += ["", "The floor for a TCP-to-TCP relay on this machine: the same load, in the same runs, through byte "
                "relays that do not parse HTTP/2 (each started for its run; CPU = the relay process):", "",
                "| relay | one-way | vs direct | CPU per GiB | echo | vs direct | CPU per GiB |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for k, label in floors + [("gateway", "jmp-bridge gateway (HTTP/2 both sides)")]:
            cells = []
            for mode in ("oneway", "echo"):
                a, d = R.get(f"{k}-{mode}", {}), R.get(f"direct-{mode}", {})
                x, y, c = a.get("bytes_per_s"), d.get("bytes_per_s"), a.get("cpu_per_gib")
                cells += [rate(a), f"{x / y:.2f}×" if x and y else "–", f"{c:.2f} s" if c is not None else "–"]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    if "gateway-tls-oneway" in R:
        out += ["", "With TLS on both legs, as in production (the exporter's leg to the gateway, the gateway's to the "
                "router; TLS 1.3, P-256, ALPN h2): the same load client and sink with TLS on, in the same runs, "
                "through the gateway, straight into the sink, and through a relay that ends TLS and opens TLS to the "
                "sink without parsing HTTP/2 (HAProxy in TCP mode, one thread). "
                "The client's leg is AES-256-GCM (the client's OpenSSL asks for it first), the sink's leg "
                "AES-128-GCM for both relays (the gateway's BoringSSL asks for it first; HAProxy is set to it), "
                "direct AES-256-GCM:", "",
                "| relay, TLS both legs | one-way | vs direct | CPU per GiB | echo | vs direct | CPU per GiB |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for k, label in (("direct-tls", "none: the client straight into the sink"),
                         ("haproxy-tls", f"HAProxy {HAPROXY_VERSION}, TCP mode (decrypt, encrypt)"),
                         ("gateway-tls", "jmp-bridge gateway (TLS and HTTP/2 both sides)")):
            if f"{k}-oneway" not in R:
                continue
            cells = []
            for mode in ("oneway", "echo"):
                a, d = R.get(f"{k}-{mode}", {}), R.get(f"direct-tls-{mode}", {})
                x, y, c = a.get("bytes_per_s"), d.get("bytes_per_s"), a.get("cpu_per_gib")
                cells += [rate(a), f"{x / y:.2f}×" if x and y else "–",
                          f"{c:.2f} s" if c is not None and k != "direct-tls" else "–"]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        if R.get("haproxy_missing"):
            out += ["", "(HAProxy is not installed: no TLS relay row.)"]
    # proxyd splices and HAProxy uses recv(2)/send(2): neither is counted, so neither is listed.
    counted = [(k, R[k]) for k in sorted(R) if isinstance(R[k], dict) and R[k].get("writes_per_gib")
               and not k.startswith(("direct", "proxyd", "haproxy"))]
    if counted:
        out += ["", "The relay process's read and write system calls per GiB moved (`/proc/PID/io` `syscr` / "
                "`syscw`, which count read(2), write(2), readv(2) and writev(2)): about one write per read of the "
                "socket is the write batching of `HTTP2WriteBuffering` at work; without it the plaintext gateway "
                "made one write per 64 KiB DATA frame, 16,384 per GiB (README, Performance): "
                + "; ".join(f"{k} {r['reads_per_gib']:,.0f} / {r['writes_per_gib']:,.0f}" for k, r in counted) + "."]

    out += ["", "Stream set-up: from the controller sending a ListenResponse to the first client byte arriving at "
            "the exporter's session socket (jumpstarter 0.9.0's `connect_unix` + `connect_router_stream`, a fresh "
            "TLS channel per stream; the stub router writes the client's byte as soon as the exporter's stream "
            "arrives, as the real router does when the client is already waiting). Stock: the exporter's channel "
            "goes to the router; gateway: to the gateway on 127.0.0.1 (TLS), which relays on its pooled TLS "
            f"connection to the router. TLS everywhere (P-256); {args.setup_runs} streams per path after "
            f"{args.setup_warmup} warm-up, alternating:", "",
            "| stream set-up | gateway (pooled) | stock (TLS per stream) | saving | new router connections per stream, gateway / stock | goal | |",
            "|---|---:|---:|---:|---:|---|---|"]
    labels = (("loopback", "loopback"), ("loopback-awake", "loopback, vCPUs kept awake"),
              ("netem", f"netem, {args.netem_delay_ms:g} ms round trip"),
              ("delay", f"{args.netem_delay_ms:g} ms round trip added in user space (no netem)"))

    def fmt(r):
        return f"{r['p50_ms']:.2f} ms (p90 {r['p90_ms']:.2f})" if r.get("p50_ms") is not None else "failed"

    for key, label in labels:
        d = S.get(key)
        if not d:
            continue
        gw, st = d.get("gateway", {}), d.get("stock", {})
        a, b = gw.get("p50_ms"), st.get("p50_ms")
        ca, cb = gw.get("new_connections_per_stream"), st.get("new_connections_per_stream")
        saving = f"{b - a:+.2f} ms" if a is not None and b is not None else "–"
        if key in ("netem", "delay"):
            ok = a is not None and b is not None and b - a >= args.netem_delay_ms
            verdict = met(ok)
        else:
            # On loopback a round trip is tens of µs: the count of handshakes is what shows it.
            ok = ca == 0 and cb == 1
            verdict = (met(ok) + " (by connection count: no TCP + TLS handshake to the router, 2 round trips)"
                       if ok else "**missed**")
        out.append(f"| {label} | {fmt(gw)} | {fmt(st)} | {saving} | {ca if ca is None else f'{ca:.2f}'} / "
                   f"{cb if cb is None else f'{cb:.2f}'} | ≥ 1 round trip saved | {verdict} |")
        if d.get("errors"):
            out.append(f"| ⚠ {label} errors | {'; '.join(d['errors'][:3])} | | | | | |")
    cold_rows = []
    for key, label in labels:
        d = S.get(key)
        if not d or "gateway-cold" not in d:
            continue
        cold, st = d["gateway-cold"], d.get("stock", {})
        a, b = cold.get("p50_ms"), st.get("p50_ms")
        saving = f"{b - a:+.2f} ms" if a is not None and b is not None else "–"
        rtt = f" ({(b - a) / args.netem_delay_ms:.1f} round trips)" if key in ("netem", "delay") and a and b else ""
        c = cold.get("new_connections_per_stream")
        cold_rows.append(f"| {label} | {fmt(cold)} | {fmt(st)} | {saving}{rtt} | {'–' if c is None else f'{c:.2f}'} |")
    if cold_rows:
        out += ["", "The first stream after a quiet spell, in the same runs: a second gateway whose router "
                "connections its `idle-timeout` has closed (1 s here, 30 min by default; each stream is sent once "
                "`status` lists no router connection), so the gateway connects to the router (TCP, TLS) from the moment "
                "the ListenResponse passes, and the exporter's stream waits for what is left of the handshakes; not a goal "
                "of the issue, which asks for the pooled path:", "",
                "| stream set-up | gateway, router connection closed (cold) | stock (TLS per stream) | saving | "
                "new router connections per stream, cold gateway |", "|---|---:|---:|---:|---:|"] + cold_rows
    split = [f"{key} {path} {S[key][path]['listen_p50_ms']:.2f} / {S[key][path]['to_router_p50_ms']:.2f} ms"
             for key in ("loopback", "loopback-awake", "netem", "delay") if key in S
             for path in ("gateway", "gateway-cold", "stock")
             if S[key].get(path, {}).get("to_router_p50_ms") is not None]
    if split:
        out += ["", "Where the set-up time goes (p50 from the controller's send): the ListenResponse at the exporter / "
                "the exporter's stream at the router (the rest is the client byte's way back to the session "
                "socket): " + ", ".join(split) + "."]
    if "netem_unavailable" in S:
        out += ["", f"No netem on this machine ({S['netem_unavailable']}): the added round trip comes from "
                "`bench/delay_relay.py` in front of the controller and the router, which delays each byte by half "
                "the round trip each way and holds a fresh connection's first bytes for its TCP handshake's "
                "round trip, as the path would. Both paths go through it."]
    return out



def render(args, header, res, problems, sizes, elapsed) -> str:
    J, R = res["jmp-bridge"], res["reference"]
    rows = []

    def ratio(a, b, invert=False):
        if a in (None, 0) or b in (None, 0):
            return "–"
        return f"{(b / a if invert else a / b):.2f}×"

    def verdict(ok):
        return "met" if ok else "**missed**"

    def g(d, *keys):
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    def flag(r):
        return "" if r is None or r.get("ok") else " ⚠"

    goals_tp = {("oneway", 65536): (3, 1.5e9), ("oneway", 1024): (6, None), ("echo", 1024): (8, None)}
    for mode in ("oneway", "echo"):
        for size in sizes:
            key = f"{mode}-{size}"
            a, b = g(J, key, "bytes_per_s"), g(R, key, "bytes_per_s")
            goal = goals_tp.get((mode, size))
            gtext, gmet = "", ""
            if goal and a and b:
                x, floor = goal
                ok = a >= x * b and (floor is None or a >= floor)
                gtext = f"≥ {x}×" + (f" and ≥ {floor / 1e9:g} GB/s" if floor else "")
                gmet = verdict(ok)
            label = "one-way" if mode == "oneway" else "echo"
            rows.append((f"{label} {size // KIB} KiB frames", (fmt_rate(a) if a else "failed") + flag(g(J, key)),
                         (fmt_rate(b) if b else "failed") + flag(g(R, key)), ratio(a, b), gtext, gmet))
    for size in sizes:
        key = f"raw-oneway-{size}"
        a, b = g(J, key, "bytes_per_s"), g(R, key, "bytes_per_s")
        gtext, gmet = "", ""
        if size == 65536 and a and b:
            gtext, gmet = "≥ 3× and ≥ 1.5 GB/s", verdict(a >= 3 * b and a >= 1.5e9)
        rows.append((f"one-way {size // KIB} KiB frames (raw HTTP/2 client)",
                     (fmt_rate(a) if a else "failed") + flag(g(J, key)),
                     (fmt_rate(b) if b else "failed") + flag(g(R, key)), ratio(a, b), gtext, gmet))

    for mode in ("oneway", "echo"):
        key = f"{mode}-65536"
        a, b = g(J, key, "cpu_per_gib"), g(R, key, "cpu_per_gib")
        label = "one-way" if mode == "oneway" else "echo"
        ok = a is not None and b is not None and a <= b / 3
        rows.append((f"bridge CPU per GiB moved, {label} 64 KiB", f"{a:.2f} s" if a else "–",
                     f"{b:.2f} s" if b else "–", ratio(a, b, invert=True) + " less" if a and b else "–",
                     "≤ ⅓ of reference", verdict(ok)))
    for mode in ("oneway", "echo"):
        key = f"{mode}-1024"
        a, b = g(J, key, "cpu_per_gib"), g(R, key, "cpu_per_gib")
        label = "one-way" if mode == "oneway" else "echo"
        rows.append((f"bridge CPU per GiB moved, {label} 1 KiB", f"{a:.2f} s" if a else "–",
                     f"{b:.2f} s" if b else "–", ratio(a, b, invert=True) + " less" if a and b else "–", "", ""))

    for key, client_name in (("rawlatency", "raw HTTP/2 client"), ("rawlatency-awake", "raw client, vCPUs awake"),
                             ("latency", "grpc C++ client")):
        for q, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
            a, b = g(J, key, q), g(R, key, q)
            gtext, gmet = "", ""
            if q == "p99_us" and key in ("rawlatency", "rawlatency-awake"):
                gtext, gmet = "≤ ½ reference and ≤ 200 µs", verdict(bool(a and b and a <= b / 2 and a <= 200))
            rows.append((f"1-byte round trip {label} ({client_name})", f"{a:.0f} µs" if a else "failed",
                         f"{b:.0f} µs" if b else "failed",
                         ratio(a, b, invert=True) + " faster" if a and b else "–", gtext, gmet))

    n = args.streams
    sa, sb = J.get("streams", {}), R.get("streams", {})
    rows.append((f"{n} streams: RSS before → open", f"{sa.get('rss_before_kib', 0) / KIB:.1f} → "
                 f"{sa.get('rss_open_kib', 0) / KIB:.1f} MiB" + flag(sa),
                 f"{sb.get('rss_before_kib', 0) / KIB:.1f} → {sb.get('rss_open_kib', 0) / KIB:.1f} MiB" + flag(sb),
                 "", "", ""))
    a, b = sa.get("per_stream_kib"), sb.get("per_stream_kib")
    rows.append((f"{n} streams: RSS per open stream", f"{a:.1f} KiB" if a is not None else "–",
                 f"{b:.1f} KiB" if b is not None else "–", ratio(a, b, invert=True) + " less" if a and b else "–",
                 "≤ 32 KiB", verdict(a is not None and a <= 32)))
    a, b = sa.get("echo_all_s"), sb.get("echo_all_s")
    rows.append((f"{n} streams: open all and echo 64 B on each", f"{a * 1000:.0f} ms" if a else "–",
                 f"{b * 1000:.0f} ms" if b else "–", ratio(a, b, invert=True) + " faster" if a and b else "–", "", ""))
    a, b = sa.get("close_all_s"), sb.get("close_all_s")
    rows.append((f"{n} streams: half-close all until every status arrives", (f"{a * 1000:.0f} ms" if a else "–") + flag(sa),
                 (f"{b * 1000:.0f} ms" if b else "–") + flag(sb),
                 ratio(a, b, invert=True) + " faster" if a and b else "–", "", ""))
    rows.append((f"{n} streams: RSS after all closed", f"{sa.get('rss_closed_kib', 0) / KIB:.1f} MiB",
                 f"{sb.get('rss_closed_kib', 0) / KIB:.1f} MiB", "", "", ""))

    a, b = J.get("ready_ms"), R.get("ready_ms")
    rows.append(("exec → ready (median)", f"{a:.1f} ms", f"{b:.0f} ms", ratio(a, b, invert=True) + " faster",
                 "≤ 50 ms", verdict(a <= 50)))
    a, b = J.get("idle_rss_kib"), R.get("idle_rss_kib")
    rows.append(("idle RSS", f"{a / KIB:.1f} MiB", f"{b / KIB:.1f} MiB", ratio(a, b, invert=True) + " less",
                 "≤ 25 MiB", verdict(a <= 25 * KIB)))
    sa, sb = J.get("slow", {}), R.get("slow", {})
    a, b = sa.get("rss_max_kib"), sb.get("rss_max_kib")
    slow_label = (f"{args.slow_bytes / GIB:g} GiB" if args.slow_bytes >= GIB else f"{args.slow_bytes / MIB:g} MiB")
    rows.append((f"max RSS pushing {slow_label} into a {args.slow_rate / 1e6:g} MB/s target",
                 (f"{a / KIB:.1f} MiB" if a else "–") + flag(sa), (f"{b / KIB:.1f} MiB" if b else "–") + flag(sb),
                 ratio(a, b, invert=True) + " less" if a and b else "–", "≤ 64 MiB", verdict(a is not None and a <= 64 * KIB)))

    out = [f"# jmp-bridge benchmark, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}", "", header,
           f"- run time: {elapsed:.0f} s; each throughput figure is the median of {args.repeat} runs of "
           f"{args.seconds:g} s on one stream, each latency percentile the median of {args.repeat} runs of "
           f"{args.iters} round trips; runs alternate between the two bridges", "",
           "| measurement | jmp-bridge | reference (jumpstarter 0.9.0) | jmp-bridge vs reference | goal | |",
           "|---|---:|---:|---:|---|---|"]
    out += [f"| {' | '.join(r)} |" for r in rows]

    out += ["", "Throughput details (CPU = bridge process utime+stime over the run; GiB moved counts payload in "
            "both directions for echo; client and target CPU = their utime+stime as a share of one core, "
            f"{os.cpu_count()} cores in all):", "",
            "| run | bridge | MB/s per run | payload moved (all runs) | seconds | bridge CPU s | CPU s/GiB "
            "| client CPU | target CPU | last status | ok |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for mode in ("oneway", "echo", "raw-oneway"):
        for size in sizes:
            for kind in ("jmp-bridge", "reference"):
                r = res[kind].get(f"{mode}-{size}", {})
                if "seconds" not in r:
                    out.append(f"| {mode} {size // KIB} KiB | {kind} | – | – | – | – | – | – | – | {r.get('error', '')} | no |")
                    continue
                last = f"{r['status']} {r.get('message', '')}" if "status" in r else f"ended: {r.get('ended')}"
                cpg = r.get("cpu_per_gib")
                secs_all = r["all_seconds"] or 1
                runs_txt = ", ".join(f"{v / 1e6:,.0f}" if v else "–" for v in r["runs_bytes_per_s"])
                out.append(f"| {mode} {size // KIB} KiB | {kind} | {runs_txt} | {r['all_moved'] / MIB:,.0f} MiB "
                           f"| {r['all_seconds']:.2f} | {r['all_bridge_cpu_s']:.2f} | {cpg:.2f} "
                           f"| {100 * r['all_client_cpu_s'] / secs_all:.0f}% "
                           f"| {100 * r['all_target_cpu_s'] / secs_all:.0f}% "
                           f"| {last} | {'yes' if r.get('ok') else '**no**'} |")

    D = res.get("doors", {})
    if D:
        door = D.get("jmp-bridge door (splice)", {})
        out += ["", "Local door (raw Unix socket → route target; one connection, the C client pushes "
                f"{args.door_bytes / GIB:g} GiB one way into the discard target, or a quarter of that through "
                "the echo target while reading the echo back; median of "
                f"{args.repeat} runs; CPU = the relay process, reaped children included):", "",
                "| relay | one-way | echo (each way) | CPU s/GiB one-way | CPU s/GiB echo | door vs this, one-way | goal | |",
                "|---|---:|---:|---:|---:|---:|---|---|"]
        for name, by_mode in D.items():
            one, echo_r = by_mode.get("discard", {}), by_mode.get("echo", {})
            a, b = door.get("discard", {}).get("bytes_per_s"), one.get("bytes_per_s")
            goal, met = "", ""
            if name == "systemd-socket-proxyd":
                goal, met = "≥ 0.9×", verdict(a is not None and b is not None and a >= 0.9 * b)
            elif name == "socat":
                goal, met = "≥ 3×", verdict(a is not None and b is not None and a >= 3 * b)
            flag_txt = "" if one.get("ok", True) and echo_r.get("ok", True) else " ⚠"
            out.append(f"| {name}{flag_txt} | {fmt_rate(one.get('bytes_per_s') or 0)} "
                       f"| {fmt_rate(echo_r.get('bytes_per_s') or 0)} "
                       f"| {(one.get('cpu_per_gib') or 0):.2f} | {(echo_r.get('cpu_per_gib') or 0):.2f} "
                       f"| {ratio(a, b) if name != 'jmp-bridge door (splice)' else '–'} | {goal} | {met} |")
        bad_doors = [f"{name} {mode}: received {r.get('received')} {r.get('error', '')}"
                     for name, by_mode in D.items() for mode, r in by_mode.items() if not r.get("ok")]
        if bad_doors:
            out += ["", "⚠ door runs that did not get every byte back (echo) or failed: " + "; ".join(bad_doors)]

    if res.get("metrics"):
        out += render_metrics(args, res["metrics"])

    if res.get("gateway"):
        out += render_gateway(args, res["gateway"])

    S = res.get("sink", {})
    if S:
        out += ["", "Context — the same client against a grpc C++ (sync API) server for the method, no bridge and no "
                "Unix socket, one run each: what the client and gRPC reach on this machine by themselves (the server "
                "echoes message by message, so small-frame echo is not a ceiling for a bridge that coalesces):", "",
                "| run | throughput | server CPU | client CPU |", "|---|---:|---:|---:|"]
        for mode in ("oneway", "echo", "raw-oneway"):
            for size in sizes:
                r = S.get(f"{mode}-{size}", {})
                if "seconds" in r:
                    label = f"one-way {size // KIB} KiB (raw HTTP/2 client)" if mode == "raw-oneway" else \
                        f"{mode} {size // KIB} KiB"
                    out.append(f"| {label} | {fmt_rate(r['bytes_per_s'])} "
                               f"| {100 * r['bridge_cpu_s'] / r['seconds']:.0f}% "
                               f"| {100 * r['client_cpu_s'] / r['seconds']:.0f}% |")
        for key, client_name in (("rawlatency", "raw HTTP/2 client"), ("rawlatency-awake", "raw client, vCPUs awake"),
                                 ("latency", "grpc C++ client")):
            r = S.get(key, {})
            if r.get("p50_us"):
                out.append(f"| 1-byte round trip p50 / p99 / p99.9 ({client_name}) | {r['p50_us']:.0f} / "
                           f"{r['p99_us']:.0f} / {r['p999_us']:.0f} µs | | |")

    notes = [
        "",
        "Notes:",
        "- Every run uses the same C++ load client and the same C targets (thread per connection, blocking I/O); "
        "each bridge routes to the same Unix sockets. Only 127.0.0.1 and Unix sockets are used.",
        "- The reference bridge is bench/reference_bridge.py: a grpc.aio server whose Stream handler is "
        "`RouterStream(context=context)` + `forward_stream` to an anyio `connect_unix`, as jumpstarter's exporter "
        "bridges; it ends each stream with status ABORTED (10, `RouterStream.aclose`), jmp-bridge with OK (0).",
        "- Throughput = payload bytes one way / time from the first write until the bridge's GOAWAY arrives "
        "(the target has read or echoed everything). "
        f"The client marks {args.batch - 1} of every {args.batch} writes with gRPC's buffer hint (`--batch {args.batch}`) so that small frames are not limited by its per-message cost; several "
        "gRPC messages may then share an HTTP/2 DATA frame; it serializes its one request message once and "
        "writes it by reference (no user-space payload copy). The streams test puts all streams on one HTTP/2 connection.",
        "- Raw HTTP/2 client rows: bench/rawclient.c writes a prepared buffer of whole messages again and "
        "again in DATA frames as large as the bridge's SETTINGS_MAX_FRAME_SIZE and flow-control windows allow "
        f"(max frame seen: jmp-bridge {g(J, 'raw-oneway-65536', 'max_frame')}, reference "
        f"{g(R, 'raw-oneway-65536', 'max_frame')} bytes), with no per-message work; the time runs until the "
        "stream's trailers. It shows what each bridge carries when the grpc C++ client is not the limit.",
        "- jmp-bridge runs with its default log level (info).",
        f"- Latency: {args.repeat} runs of {args.iters} round trips after 500 warm-up each, per client; p99 per "
        f"run with the raw HTTP/2 client {[x.get('p99_us') for x in g(J, 'rawlatency', 'runs') or []]} µs "
        f"(jmp-bridge), {[x.get('p99_us') for x in g(R, 'rawlatency', 'runs') or []]} µs (reference), with the "
        f"grpc C++ client {[x.get('p99_us') for x in g(J, 'latency', 'runs') or []]} / "
        f"{[x.get('p99_us') for x in g(R, 'latency', 'runs') or []]} µs; median max (raw) "
        f"{g(J, 'rawlatency', 'max_us')} / {g(R, 'rawlatency', 'max_us')} µs. The raw client "
        "(bench/rawclient.c) writes each request as one DATA frame on one blocking socket and reads the "
        "reply itself; the grpc C++ client passes each message through its completion-queue threads, "
        "which on 2 cores costs more than the bridge's own hop. \"vCPUs awake\": the same raw runs while a "
        "`nice -n 19` busy loop runs on every CPU, so that no round trip waits for the hypervisor to wake a "
        "halted vCPU (a bridge round trip wakes four processes in turn, a bare server two); p99 per run "
        f"{[x.get('p99_us') for x in g(J, 'rawlatency-awake', 'runs') or []]} / "
        f"{[x.get('p99_us') for x in g(R, 'rawlatency-awake', 'runs') or []]} µs.",
        f"- exec → ready runs (ms): jmp-bridge {J.get('ready_all_ms')}, reference {R.get('ready_all_ms')}.",
        "- Local doors: systemd-socket-proxyd runs under systemd-socket-activate; socat forks per connection "
        "(`UNIX-LISTEN:…,fork UNIX-CONNECT:…`); the direct row connects the client to the target itself.",
    ]
    bad = []
    for kind in ("jmp-bridge", "reference", "sink"):
        for key, r in res.get(kind, {}).items():
            if isinstance(r, dict) and not r.get("ok", True):
                brief = {k: v for k, v in r.items() if k not in ("stderr", "runs", "cmd", "runs_bytes_per_s")}
                bad.append(f"- ⚠ {kind} {key}: " + (r.get("error") or json.dumps(brief)) + f" (`{r.get('cmd', '')}`)")
        for line in problems.get(kind, [])[:10]:
            bad.append(f"- {kind} log: `{line[:300]}`")
        if len(problems.get(kind, [])) > 10:
            bad.append(f"- {kind} log: … {len(problems[kind]) - 10} more warning/error lines")
    for line in problems.get("gateway", [])[:10]:
        bad.append(f"- gateway log: `{line[:300]}`")
    for line in problems.get("metrics", [])[:10]:
        bad.append(f"- metrics on/off bridges' log: `{line[:300]}`")
    if bad:
        notes += ["", "Problems seen during the run:", ""] + bad
    return "\n".join(out + notes) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
