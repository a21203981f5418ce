#!/usr/bin/env python3
"""Soak test of jmp-bridge: mixed load for a long time, watching memory, descriptors and streams.

Run by ``scripts/soak`` (``make soak``) with the .venv's Python (it needs grpcio and
jumpstarter_protocol, as the interop tests do). See bench/README.md, "Soak", for what runs, what
is checked and the pass rule. Everything it starts (the bridge, the targets, ``jmp-bridge attach``
processes) is stopped when it ends, also on SIGINT/SIGTERM; it uses loopback and Unix sockets only.

``soak.py --target echo|digest PATH`` is the target mode it starts itself in subprocesses: a
threaded Unix-socket server that echoes, or reads to EOF and replies ``<length> <sha256>\\n``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import csv
import datetime
import hashlib
import os
import platform
import random
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import tty

from soak_gateway import GatewayLoad

MIB = 1024 * 1024
CHUNK = 64 * 1024
ROUTE_METHOD = "/jumpstarter.v1.RouterService/Stream"
FRAME_DATA, FRAME_GOAWAY = 0, 7
#: Console output records: fixed width, printable only (no byte a pty's output processing changes).
RECORD = 16
#: How long a single operation may take before it counts as stuck (a failure).
OP_TIMEOUT = 120.0

#: The calls the current worker's operation opened, cancelled when it ends (a no-op for finished ones).
_open_calls: contextvars.ContextVar[list] = contextvars.ContextVar("open_calls")  # and its own channels
#: Where the current operation is (Soak.step): named when it takes too long.
_op_step: contextvars.ContextVar[dict] = contextvars.ContextVar("op_step")


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# target mode


def run_target(mode: str, path: str) -> int:
    """A threaded Unix-socket target (echo or digest), until SIGTERM."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            conn = self.request
            try:
                if mode == "echo":
                    while data := conn.recv(256 * 1024):
                        conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)
                else:
                    digest, length = hashlib.sha256(), 0
                    while data := conn.recv(256 * 1024):
                        digest.update(data)
                        length += len(data)
                    conn.sendall(f"{length} {digest.hexdigest()}\n".encode())
            except OSError:
                pass  # the bridge closed the connection (a cancelled stream)

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True
        request_queue_size = 256

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(path, Handler) as server:
        print("ready", flush=True)
        server.serve_forever(poll_interval=0.2)
    return 0


# ---------------------------------------------------------------------------------------------
# helpers


def parse_status_line(line: str) -> dict[str, str]:
    """One line of the ``status`` reply (as Tests/Interop/conftest.py parses it)."""
    items: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))', line):
        items[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
    return items


async def control_status(path: str, timeout: float = 10.0) -> list[dict[str, str]]:
    """The control socket's ``status`` reply (man jmp-bridge.8, "Control socket"), parsed."""

    async def ask():
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(b"status\n")
            await writer.drain()
            text = (await reader.read()).decode()
        finally:
            writer.close()
        first, _, rest = text.partition("\n")
        if first != "ok":
            raise RuntimeError(f"status refused: {first!r}")
        return [parse_status_line(line) for line in rest.splitlines() if line]

    return await asyncio.wait_for(ask(), timeout)


def proc_status(pid: int, key: str) -> int:
    """A number from /proc/PID/status (``VmRSS`` in KiB, ``Threads``), -1 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    return -1


def rss_kib(pid: int) -> int:
    return proc_status(pid, "VmRSS")


def thread_count(pid: int) -> int:
    return proc_status(pid, "Threads")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def bridge_sockets(pid: int) -> list[str]:
    """The process's sockets as ``ss`` shows them (Unix and TCP), each connected one followed by
    its peer's line (which says which process holds the other end), for the report."""
    lines = []
    for family in ("-x", "-t"):
        rows = [re.sub(r"\s+", " ", line).strip() for line in
                subprocess.run(["ss", family, "-a", "-n", "-p"], capture_output=True, text=True).stdout.splitlines()]
        for row in rows:
            if f"pid={pid}," not in row:
                continue
            lines.append(row)
            fields = row.split()
            if "ESTAB" not in fields:
                continue
            at = fields.index("ESTAB")
            local, peer = (fields[at + 4], fields[at + 6]) if family == "-x" else (fields[at + 3], fields[at + 4])
            for other in rows:
                f = other.split()
                if "ESTAB" in f and other != row and (
                        (family == "-x" and f[f.index("ESTAB") + 4] == peer)
                        or (family == "-t" and f[f.index("ESTAB") + 3] == peer)):
                    lines.append("  peer: " + other)
    return lines


def fd_kinds(pid: int) -> dict[str, int]:
    """The open descriptors by kind (``socket``, ``anon_inode:[eventfd]``, ``/dev/ptmx``, ...)."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = re.sub(r":\[\d+\]$", "", target) if not target.startswith("anon_inode:") else target
        kind = re.sub(r"^/dev/pts/\d+$", "/dev/pts/N", kind)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def console_records(first: int, count: int) -> bytes:
    return b"".join(b"<%014d>" % (n % 10**14) for n in range(first, first + count))


def check_console_piece(data: bytes) -> str | None:
    """None if ``data`` is a contiguous piece of the writer's output, else what is wrong."""
    if not data:
        return "got no bytes (not even the scrollback)"
    start = data.find(b"<")
    if start < 0 or start >= RECORD or start + RECORD > len(data):
        if len(data) < 2 * RECORD and re.fullmatch(rb"[0-9<>]*", data):
            return None  # too short to place, made of the right bytes
        return f"no record start in the first bytes: {data[:40]!r}"
    try:
        seq = int(data[start + 1:start + RECORD - 1])
    except ValueError:
        return f"malformed record at offset {start}: {data[start:start + RECORD]!r}"
    first = seq - (1 if start else 0)
    offset = (RECORD - start) % RECORD
    expected = console_records(max(first, 0), (offset + len(data)) // RECORD + 2)[offset:offset + len(data)]
    if first < 0 or data != expected:
        bad = next((i for i, (a, b) in enumerate(zip(data, expected)) if a != b), min(len(data), len(expected)))
        return (f"not contiguous at byte {bad} of {len(data)}: got {data[max(0, bad - 20):bad + 20]!r}, "
                f"expected {expected[max(0, bad - 20):bad + 20]!r}")
    return None


# ---------------------------------------------------------------------------------------------
# the soak


class Soak:
    """One soak run: the bridge and its targets, the load, the samples and the failures."""

    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="jmp-soak.", dir="/tmp")
        self.children: list[subprocess.Popen] = []
        self.stop = asyncio.Event()
        self.failures: list[str] = []
        self.failure_count = 0
        self.counts: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.rtts: list[float] = []
        self.samples: list[dict] = []
        self.phase = "start"
        self.spare = False
        self.reload_count = 0
        self.bridge: subprocess.Popen | None = None
        self.console_seq = 0
        self.writer_stop = threading.Event()
        self.serial_master = -1
        self.calls_made = 0
        self.gateway = GatewayLoad(self, args) if args.gateway else None

    def serial_master_open(self) -> bool:
        return self.serial_master >= 0

    # -- bookkeeping

    def fail(self, what: str) -> None:
        self.failure_count += 1
        log(f"FAILURE: {what}")
        if len(self.failures) < 50:
            self.failures.append(f"{time.monotonic() - self.t0:7.1f} s: {what}")

    def count(self, op: str, nbytes: int = 0) -> None:
        self.counts[op] = self.counts.get(op, 0) + 1
        self.bytes[op] = self.bytes.get(op, 0) + nbytes

    # -- setup

    def path(self, name: str) -> str:
        return os.path.join(self.work, name)

    def config(self, spare: bool) -> str:
        """The bridge's configuration; ``spare`` adds a unix and a pty route nobody uses."""
        lines = [
            "listen:",
            "  - address: tcp:127.0.0.1:0",
            f"    tls: {{cert: {self.path('tls.crt')}, key: {self.path('tls.key')}}}",
            "    allow-unauthenticated: true",
            f"  - address: unix:{self.path('grpc.sock')}",
            f"control: unix:{self.path('control.sock')}",
            "routes:",
            f"  echo: {{unix: {self.path('echo.sock')}}}",
            f"  digest: {{unix: {self.path('digest.sock')}}}",
            f"  console: {{pty: {{link: {self.path('console')}, lag-limit: 8MiB}}}}",
            f"  uart: {{serial: {{device: {self.path('ttyFAKE0')}, baud: 115200}}}}",
        ]
        if spare:
            lines += [f"  spare: {{unix: {self.path('spare.sock')}}}",
                      f"  spare-console: {{pty: {{link: {self.path('spare-console')}}}}}"]
        if self.gateway:
            lines += self.gateway.config_lines()
        return "\n".join(lines) + "\n"

    def write_config(self, spare: bool) -> None:
        tmp = self.path("bridge.yaml.tmp")
        with open(tmp, "w") as f:
            f.write(self.config(spare))
        os.replace(tmp, self.path("bridge.yaml"))
        self.spare = spare

    def start_target(self, mode: str) -> None:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--target", mode,
                                 self.path(f"{mode}.sock")],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.children.append(proc)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {mode} target did not start")

    def plug_serial(self) -> int:
        """A pty standing in for a USB serial adapter: the route's device path is a symlink to its
        slave; the soak is the board on the master (as Tests/Interop/test_console.py's fake_serial)."""
        master, slave = os.openpty()
        try:
            name = os.ttyname(slave)
            # Closed once: the console writer thread may get the same number for a file of its own.
            closing, slave = slave, -1
            os.close(closing)
            os.set_blocking(master, False)
            tmp = self.path("ttyFAKE0.tmp")
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            os.symlink(name, tmp)
            os.replace(tmp, self.path("ttyFAKE0"))
        except BaseException:
            # A cycle that fails here is tried again: each try must not keep a pty.
            if slave >= 0:
                os.close(slave)
            os.close(master)
            raise
        return master

    def unplug_serial(self, master: int) -> None:
        """The adapter goes away: the path is removed and the master closed (the bridge's reads fail)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path("ttyFAKE0"))
        os.close(master)

    async def start_bridge(self) -> None:
        # A copy of its own: a rebuild of the given binary during the soak must not change what
        # runs or make `jmp-bridge attach` fail to start ("Text file busy").
        shutil.copy2(self.args.bridge, self.path("jmp-bridge"))
        self.binary = self.path("jmp-bridge")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "30", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", self.path("tls.key"), "-out", self.path("tls.crt")],
                       check=True, capture_output=True)
        if self.gateway:
            await self.gateway.start_upstreams()
        self.start_target("echo")
        self.start_target("digest")
        self.serial_master = self.plug_serial()
        self.write_config(False)
        self.log_path = self.path("bridge.log")
        self.log_file = open(self.log_path, "w")
        self.bridge = subprocess.Popen([self.binary, "serve", "--config", self.path("bridge.yaml"),
                                        "--grace", "5"],
                                       stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
                                       cwd=self.work)
        self.children.append(self.bridge)
        deadline = time.monotonic() + 60
        while True:
            if self.bridge.poll() is not None:
                raise RuntimeError(f"jmp-bridge exited with {self.bridge.returncode} at start:\n{self.log_tail()}")
            try:
                reply = await control_status(self.path("control.sock"))
                if reply[0].get("state") == "ready":
                    break
            except (OSError, RuntimeError, asyncio.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jmp-bridge not ready within 60 s:\n{self.log_tail()}")
            await asyncio.sleep(0.2)
        self.port = next(int(item["listener"].rsplit(":", 1)[1]) for item in reply
                         if item.get("listener", "").startswith("tcp:127.0.0.1:"))
        log(f"jmp-bridge pid {self.bridge.pid} ready on 127.0.0.1:{self.port} and {self.path('grpc.sock')}")
        if self.gateway:
            self.gateway.bridge_started(reply)
            log(f"its exporter gateway on {self.gateway.endpoint}")

    def log_tail(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-30:])

    # -- gRPC

    def new_channel(self, which: int):
        """A channel (its own HTTP/2 connection) over TLS on 127.0.0.1 (0) or the Unix socket (1)."""
        import grpc

        opts = [("grpc.use_local_subchannel_pool", 1)]
        if which == 0:
            creds = grpc.ssl_channel_credentials(root_certificates=self.tls_cert)
            return grpc.aio.secure_channel(f"127.0.0.1:{self.port}", creds, options=opts)
        return grpc.aio.insecure_channel(f"unix:{self.path('grpc.sock')}", options=opts)

    def open_channels(self):
        with open(self.path("tls.crt"), "rb") as f:
            self.tls_cert = f.read()
        self.channels = [self.new_channel(0), self.new_channel(1)]
        if self.gateway:
            self.gateway.open_channels()

    async def close_channels(self):
        """Closes the channels; grpcio keeps a closed channel's connection until the channel object
        is collected, so the references go too."""
        import gc

        for channel in self.channels:
            await channel.close()
        self.channels = []
        if self.gateway:
            await self.gateway.close_channels()
        gc.collect()

    def call(self, route: str, *, attach: str | None = None, which: int | None = None):
        """A raw RouterService/Stream call (no stubs), on the TLS or the Unix connection: one of
        the two long-lived ones, which carry many streams at once, or (a third of the calls) a
        connection of its own, closed when the operation ends, as jumpstarter's
        connect_router_stream makes one per stream."""
        from jumpstarter_protocol import router_pb2

        which = random.randrange(2) if which is None else which
        if random.random() < 1 / 3:
            channel = self.new_channel(which)
            _open_calls.get([]).append(channel)
            self.count("connections")
        else:
            channel = self.channels[which]
        method = channel.stream_stream(ROUTE_METHOD, request_serializer=router_pb2.StreamRequest.SerializeToString,
                                       response_deserializer=router_pb2.StreamResponse.FromString)
        metadata = [("jmp-route", route)] + ([("jmp-attach", attach)] if attach else [])
        call = method(metadata=metadata)
        self.calls_made += 1
        _open_calls.get([]).append(call)
        return call

    @staticmethod
    def track(item) -> None:
        """A call or channel the current operation opened: cancelled or closed when it ends."""
        _open_calls.get([]).append(item)

    @staticmethod
    def step(what: str, detail=None) -> None:
        """Notes where the current operation is: a worker's timeout names the last step, and
        what ``detail()`` says then (e.g. a channel's connectivity state)."""
        _op_step.get({})["step"] = (what, time.monotonic(), detail)

    @staticmethod
    def data(payload: bytes):
        from jumpstarter_protocol import router_pb2

        return router_pb2.StreamRequest(payload=payload, frame_type=FRAME_DATA)

    @staticmethod
    def goaway():
        from jumpstarter_protocol import router_pb2

        return router_pb2.StreamRequest(frame_type=FRAME_GOAWAY)

    @staticmethod
    def spawn(coro) -> asyncio.Task:
        """A task whose failure is read by whoever awaits it, or else quietly dropped (an operation
        that failed earlier already reported why)."""
        task = asyncio.ensure_future(coro)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    @staticmethod
    async def receive(call, sink, stop_after: int | None = None) -> int:
        """Feeds DATA payloads to ``sink`` until the end of the stream (or ``stop_after`` bytes)."""
        import grpc

        total = 0
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return total
            if msg.frame_type == FRAME_GOAWAY:
                continue  # the target's EOF; the status follows
            if msg.payload:
                sink(msg.payload)
                total += len(msg.payload)
                if stop_after is not None and total >= stop_after:
                    return total

    async def status_code(self, call):
        return await asyncio.wait_for(call.code(), 30)

    # -- workers

    async def worker(self, name: str, body, pause: float = 0.05):
        """Runs ``body`` again and again until the soak stops; a stuck or failing run is a failure."""
        import grpc

        while not self.stop.is_set():
            calls: list = []
            _open_calls.set(calls)
            step: dict = {}
            _op_step.set(step)
            started = time.monotonic()
            try:
                await asyncio.wait_for(body(), OP_TIMEOUT)
            except asyncio.TimeoutError:
                where = ""
                if "step" in step:
                    what, since, detail = step["step"]
                    where = f" (started at {started - self.t0:.1f} s; last step: {what}, {since - started:.1f} s in"
                    with contextlib.suppress(Exception):
                        where += f"; {detail()}" if detail else ""
                    where += ")"
                self.fail(f"{name}: no result within {OP_TIMEOUT:.0f} s{where}")
            except grpc.aio.AioRpcError as error:
                where = f" (step: {step['step'][0]}, at {time.monotonic() - self.t0:.1f} s)" if "step" in step else ""
                self.fail(f"{name}: RPC failed: {error.code().name} {error.details()}{where}")
            except Exception as error:  # noqa: BLE001 - every failure is reported, none ends the soak
                self.fail(f"{name}: {type(error).__name__}: {error}")
            finally:
                # Calls and the operation's own channels. A finished task keeps its context and so
                # this list: drop them, or grpcio keeps their connections open after closing.
                for item in calls:
                    if isinstance(item, grpc.aio.Channel):
                        await item.close()
                    else:
                        item.cancel()
                calls.clear()
            await asyncio.sleep(pause)

    async def bulk_echo(self):
        import grpc

        size = self.args.bulk_mib * MIB
        payload = random.randbytes(size)
        call = self.call("echo")
        digest, got = hashlib.sha256(), 0

        def sink(chunk):
            nonlocal got
            digest.update(chunk)
            got += len(chunk)

        await self.send_and_finish(call, payload, self.spawn(self.receive(call, sink)), f"echo of {size} bytes")
        if got != size or digest.digest() != hashlib.sha256(payload).digest():
            raise RuntimeError(f"echo of {size} bytes came back as {got} bytes with a different SHA-256"
                               if got == size else f"echo of {size} bytes came back as {got} bytes")
        self.count("bulk-echo", 2 * size)

    async def send_and_finish(self, call, payload: bytes, reader, what: str) -> None:
        """Writes ``payload`` in CHUNK-sized DATA frames, then GOAWAY and the end of the request;
        waits for ``reader`` and fails unless the call ends with OK."""
        import grpc

        view = memoryview(payload)
        for offset in range(0, len(payload), CHUNK):
            await call.write(self.data(bytes(view[offset:offset + CHUNK])))
        await call.write(self.goaway())
        await call.done_writing()
        await reader
        code = await self.status_code(call)
        if code != grpc.StatusCode.OK:
            raise RuntimeError(f"{what} ended with {code.name}: {await call.details()}")

    async def bulk_oneway(self):
        import grpc

        size = self.args.oneway_mib * MIB
        payload = random.randbytes(size)
        call = self.call("digest")
        reply = bytearray()
        await self.send_and_finish(call, payload, self.spawn(self.receive(call, reply.extend)), f"one-way {size} bytes")
        expected = f"{size} {hashlib.sha256(payload).hexdigest()}\n".encode()
        if bytes(reply) != expected:
            raise RuntimeError(f"one-way {size} bytes: the target got {bytes(reply)!r}, expected {expected!r}")
        self.count("bulk-oneway", size)

    async def round_trips(self):
        import grpc

        call = self.call("echo")
        got = bytearray()
        for i in range(self.args.rtt_per_stream):
            byte = bytes([i & 0xFF])
            t = time.perf_counter()
            await call.write(self.data(byte))
            msg = await call.read()
            if msg is grpc.aio.EOF or msg.payload != byte:
                raise RuntimeError(f"round trip {i}: sent {byte!r}, got {msg!r}")
            self.rtts.append(time.perf_counter() - t)
            got += msg.payload
        await call.write(self.goaway())
        await call.done_writing()
        rest = bytearray()
        await self.receive(call, rest.extend)
        code = await self.status_code(call)
        if code != grpc.StatusCode.OK or rest:
            raise RuntimeError(f"round-trip stream ended with {code.name}, {len(rest)} stray bytes")
        self.count("round-trip-streams")
        self.counts["round-trips"] = self.counts.get("round-trips", 0) + self.args.rtt_per_stream
        self.bytes["round-trips"] = self.bytes.get("round-trips", 0) + 2 * self.args.rtt_per_stream

    async def cancel_mid_transfer(self):
        """Starts a 4 MiB echo, cancels the call after a random share of it; what came back so far
        must be a prefix of what was sent."""
        size = 4 * MIB
        payload = random.randbytes(size)
        call = self.call("echo")
        got = bytearray()
        cut_at = random.randrange(CHUNK, size)
        reader = self.spawn(self.receive(call, got.extend, stop_after=cut_at // 2))
        view = memoryview(payload)
        sent = 0
        for offset in range(0, cut_at, CHUNK):
            await call.write(self.data(bytes(view[offset:offset + CHUNK])))
            sent += CHUNK
        try:
            await asyncio.wait_for(asyncio.shield(reader), 5)
        except asyncio.TimeoutError:
            pass
        call.cancel()
        reader.cancel()
        try:
            await reader
        except BaseException:  # noqa: BLE001 - the cancelled read raises
            pass
        if bytes(got) != payload[:len(got)]:
            raise RuntimeError(f"cancelled echo: the {len(got)} bytes back are not a prefix of what was sent")
        self.count("cancels", sent + len(got))

    async def attach_grpc(self, seconds: float) -> bytes:
        import grpc

        call = self.call("console", attach="ro")
        got = bytearray()
        reader = self.spawn(self.receive(call, got.extend))
        done, _ = await asyncio.wait([reader], timeout=seconds)
        if done:
            raise RuntimeError(f"gRPC attachment ended by the bridge after {len(got)} bytes: "
                               f"{(await call.code()).name} {await call.details()}")
        if random.random() < 0.3:
            call.cancel()
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            self.count("console-grpc-cancelled")
        else:
            await call.write(self.goaway())
            await call.done_writing()
            await reader
            code = await self.status_code(call)
            if code != grpc.StatusCode.OK:
                raise RuntimeError(f"gRPC attachment ended with {code.name}: {await call.details()}")
        return bytes(got)

    async def attach_control(self, seconds: float) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.path("control.sock"))
        try:
            writer.write(b"attach console ro\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 10)
            if line != b"ok\n":
                raise RuntimeError(f"control attach refused: {line!r}")
            got = bytearray()

            async def pump():
                while chunk := await reader.read(256 * 1024):
                    got.extend(chunk)

            task = self.spawn(pump())
            done, _ = await asyncio.wait([task], timeout=seconds)
            if done:
                raise RuntimeError(f"control-socket attachment closed by the bridge after {len(got)} bytes")
            writer.write_eof()  # detaches; the bridge then closes
            await asyncio.wait_for(task, 30)
            return bytes(got)
        finally:
            writer.close()

    async def attach_cli(self, seconds: float) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            self.binary, "attach", "--read-only", "--control", self.path("control.sock"), "console",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out = bytearray()

            async def pump():
                while chunk := await proc.stdout.read(256 * 1024):
                    out.extend(chunk)

            task = self.spawn(pump())
            done, _ = await asyncio.wait([task], timeout=seconds)
            if done:
                raise RuntimeError(f"jmp-bridge attach ended by itself after {len(out)} bytes "
                                   f"(exit {await proc.wait()}): {(await proc.stderr.read()).decode()[-300:]}")
            proc.stdin.close()  # end of input detaches
            await asyncio.wait_for(task, 30)
            err = (await proc.stderr.read()).decode()
            status = await asyncio.wait_for(proc.wait(), 30)
            if status != 0:
                raise RuntimeError(f"jmp-bridge attach exited {status}: {err[-300:]}")
            return bytes(out)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def console_attachment(self):
        kind = random.choice(["grpc", "control", "cli"])
        seconds = random.uniform(0.5, 4.0)
        data = await {"grpc": self.attach_grpc, "control": self.attach_control, "cli": self.attach_cli}[kind](seconds)
        if problem := check_console_piece(data):
            raise RuntimeError(f"console attachment ({kind}, {len(data)} bytes): {problem}")
        self.count(f"console-{kind}", len(data))

    def console_writer(self):
        """The program on the console's far end (a thread): writes numbered records at a steady rate."""
        fd = os.open(self.path("console"), os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)  # no echo, no output processing
        try:
            per_tick = max(1, self.args.console_rate // 20 // RECORD)
            next_tick = time.monotonic()
            while not self.writer_stop.is_set():
                data = console_records(self.console_seq, per_tick)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                self.console_seq += per_tick
                self.counts["console-written"] = self.console_seq * RECORD
                next_tick += 0.05
                time.sleep(max(0.0, next_tick - time.monotonic()))
        except OSError as error:
            self.fail(f"console writer: {error}")
        finally:
            os.close(fd)

    async def route_state(self, route: str) -> str:
        for item in await control_status(self.path("control.sock")):
            if item.get("route") == route:
                return item.get("state", "")
        return "absent"

    async def wait_route_state(self, route: str, state: str, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.route_state(route) == state:
                return True
            await asyncio.sleep(0.1)
        return False

    async def read_master(self, count: int, within: float = 10) -> bytes:
        loop = asyncio.get_running_loop()
        got = bytearray()
        deadline = time.monotonic() + within
        while len(got) < count and time.monotonic() < deadline:
            try:
                got += os.read(self.serial_master, 4096)
            except BlockingIOError:
                readable = asyncio.Event()
                loop.add_reader(self.serial_master, readable.set)
                try:
                    await asyncio.wait_for(readable.wait(), max(0.01, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
                finally:
                    loop.remove_reader(self.serial_master)
        return bytes(got)

    async def serial_cycle(self):
        """The fake adapter: a stream on the uart route talks with the board, then the adapter is
        unplugged (the stream must end UNAVAILABLE, the route go down) and plugged in again (the
        route must come back up by itself)."""
        import grpc

        n = self.counts.get("serial-unplugs", 0)
        if self.serial_master < 0:  # a failed cycle left it unplugged
            self.serial_master = self.plug_serial()
        if not await self.wait_route_state("uart", "up", 15):
            raise RuntimeError(f"uart route not up within 15 s of the replug (state {await self.route_state('uart')})")
        call = self.call("uart")
        got = bytearray()
        reader = self.spawn(self.receive(call, got.extend))
        marker = f"U-Boot {n}\r\n".encode()
        await asyncio.sleep(0.2)  # let the attachment start
        os.write(self.serial_master, marker)
        ping = f"ping {n}\r".encode()
        await call.write(self.data(ping))
        echoed = await self.read_master(len(ping))
        if echoed != ping:
            raise RuntimeError(f"serial: the board got {echoed!r}, expected {ping!r}")
        deadline = time.monotonic() + 10
        while not bytes(got).endswith(marker) and time.monotonic() < deadline and not reader.done():
            await asyncio.sleep(0.05)
        if not bytes(got).endswith(marker):
            raise RuntimeError(f"serial: the stream got {bytes(got)[-60:]!r}, expected it to end with {marker!r}")
        await asyncio.sleep(random.uniform(1, self.args.serial_seconds / 2))
        self.unplug_serial(self.serial_master)
        self.serial_master = -1
        try:
            await asyncio.wait_for(reader, 15)
        except grpc.aio.AioRpcError:
            pass  # the non-OK end of the call; its code is checked below
        code = await self.status_code(call)
        if code != grpc.StatusCode.UNAVAILABLE:
            raise RuntimeError(f"serial: the attached stream ended with {code.name}, expected UNAVAILABLE on unplug")
        if not await self.wait_route_state("uart", "down", 10):
            raise RuntimeError("serial: route not down within 10 s of the unplug")
        self.count("serial-unplugs")
        await asyncio.sleep(random.uniform(0.5, self.args.serial_seconds / 2))
        self.serial_master = self.plug_serial()
        self.count("serial-replugs")

    async def reloader(self):
        """Every few seconds: add or remove the spare routes, SIGHUP, and see the change in status."""
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), self.args.reload_seconds)
                break
            except asyncio.TimeoutError:
                pass
            await self.reload(not self.spare)

    async def reload(self, spare: bool):
        self.write_config(spare)
        self.bridge.send_signal(signal.SIGHUP)
        expected = "absent" if not spare else "up"
        if await self.wait_route_state("spare-console", expected, 10):
            self.count("reloads")
        else:
            self.fail(f"reload: spare-console not {expected} within 10 s of SIGHUP")

    async def sampler(self):
        """Once a second: RSS, descriptors, threads and the status counters of the bridge."""
        with open(self.path("samples.csv"), "w", newline="") as f:
            out = None
            while True:
                t = time.monotonic() - self.t0
                if self.bridge.poll() is not None:
                    self.fail(f"jmp-bridge died (exit status {self.bridge.returncode})")
                    self.stop.set()
                    self.died = True
                    return
                row = {"t": round(t, 2), "phase": self.phase}
                try:
                    row.update(rss_kib=rss_kib(self.bridge.pid), fds=fd_count(self.bridge.pid),
                               threads=thread_count(self.bridge.pid))
                    reply = await control_status(self.path("control.sock"))
                    head = reply[0]
                    routes = {item["route"]: item for item in reply if "route" in item}
                    row.update({key.replace("-", "_"): int(head.get(key, -1)) for key in
                                ("streams-active", "streams-total", "streams-failed", "bytes-to-targets",
                                 "bytes-from-targets")})
                    row["console_attachments"] = int(routes.get("console", {}).get("attachments", -1))
                    row["console_cuts"] = int(routes.get("console", {}).get("cuts", -1))
                    row["uart_state"] = routes.get("uart", {}).get("state", "absent")
                    if self.gateway:
                        row.update(GatewayLoad.sample(reply))
                except (OSError, RuntimeError, asyncio.TimeoutError, ValueError) as error:
                    if self.bridge.poll() is None:
                        self.fail(f"sampler: status failed: {type(error).__name__}: {error}")
                    await asyncio.sleep(0.5)
                    continue
                self.samples.append(row)
                if out is None:
                    out = csv.DictWriter(f, fieldnames=list(row))
                    out.writeheader()
                out.writerow(row)
                f.flush()
                if self.sampler_done.is_set():
                    return
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - self.t0 - t)))

    # -- main

    def interrupt(self, signum: int) -> None:
        log(f"signal {signum}: stopping")
        self.interrupted = True
        self.main_task.cancel()

    async def run(self) -> int:
        self.t0 = time.monotonic()
        self.interrupted = False
        self.main_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self.interrupt, signum)
        self.tasks: list[asyncio.Future] = []
        try:
            return await self._run()
        except asyncio.CancelledError:
            # Interrupted: end every operation (each cancels its calls, kills its attach process).
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            raise

    async def _run(self) -> int:
        self.died = False
        self.work_lost = False
        self.sampler_done = asyncio.Event()
        await self.start_bridge()
        self.open_channels()
        writer = threading.Thread(target=self.console_writer, name="console-writer", daemon=True)
        writer.start()
        sampler = asyncio.ensure_future(self.sampler())

        # Baseline: the idle bridge (the console writer is the pty's far end, not a bridge client),
        # with the gateway's connection to the controller open (it is always kept).
        if self.gateway:
            await self.gateway.warm_up()
        self.phase = "idle"
        await asyncio.sleep(self.args.idle_seconds)
        self.fds_idle = fd_kinds(self.bridge.pid)
        self.sockets_idle = bridge_sockets(self.bridge.pid)
        self.load_start = time.monotonic() - self.t0
        self.phase = "load"
        log(f"load for {self.args.minutes} min")
        workers = [asyncio.ensure_future(self.worker(f"bulk-echo-{i}", self.bulk_echo)) for i in range(2)]
        workers += [asyncio.ensure_future(self.worker("bulk-oneway", self.bulk_oneway)),
                    asyncio.ensure_future(self.worker("round-trips", self.round_trips)),
                    asyncio.ensure_future(self.worker("cancel", self.cancel_mid_transfer, pause=0.3)),
                    asyncio.ensure_future(self.worker("serial", self.serial_cycle, pause=0)),
                    asyncio.ensure_future(self.reloader())]
        workers += [asyncio.ensure_future(self.worker(f"console-{i}", self.console_attachment, pause=0.1))
                    for i in range(3)]
        if self.gateway:
            workers += self.gateway.tasks()
        self.tasks += [sampler, *workers]
        end = time.monotonic() + self.args.minutes * 60
        last_report = time.monotonic()
        while time.monotonic() < end and not self.stop.is_set():
            await asyncio.sleep(1)
            if not os.path.isdir(self.work):
                # Its sockets, targets and configuration are gone: every operation would fail.
                self.fail(f"the soak's working directory {self.work} vanished; stopping the load")
                self.work_lost = True
                break
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                s = self.samples[-1] if self.samples else {}
                log(f"{(time.monotonic() - self.t0 - self.load_start) / 60:.1f} min: rss={s.get('rss_kib')} KiB "
                    f"fds={s.get('fds')} active={s.get('streams_active')} failures={self.failure_count} "
                    f"ops={sum(v for k, v in self.counts.items() if k not in ('console-written', 'round-trips'))}")
        self.stop.set()
        self.load_end = time.monotonic() - self.t0
        self.phase = "drain"
        log("load stopped; waiting for the workers' last operations")
        done, pending = await asyncio.wait(workers, timeout=OP_TIMEOUT + 10)
        for task in pending:
            self.fail("a worker did not stop within its time limit")
            task.cancel()
        if not self.died and not self.work_lost:
            # Back to the starting state: spare routes removed, the adapter plugged in.
            if self.spare:
                await self.reload(False)
            if self.serial_master < 0:
                self.serial_master = self.plug_serial()
            await self.close_channels()
            self.writer_stop.set()
            await asyncio.to_thread(writer.join, 5)
            await self.settle()
        self.sampler_done.set()
        await asyncio.wait([sampler], timeout=10)
        if self.gateway:
            await self.gateway.stop_upstreams()
        return 0

    async def settle(self):
        """After the load: the descriptors must come back near the idle baseline and no stream stay
        open; waits up to SETTLE seconds (the heap is trimmed every 10 s) and records the result."""
        baseline = [s for s in self.samples if s["phase"] == "idle"]
        self.baseline_fds = min(s["fds"] for s in baseline)
        deadline = time.monotonic() + self.args.settle_seconds
        if not await self.wait_route_state("uart", "up", 15):
            self.fail("uart route not back up after the load")
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            s = self.samples[-1]
            if s["fds"] <= self.baseline_fds + self.args.fd_margin_final and s["streams_active"] == 0 \
                    and s.get("gw_relays", 0) == 0:
                break
        self.phase = "settled"
        await asyncio.sleep(2.5)  # a few samples in the settled state
        self.fds_final = fd_kinds(self.bridge.pid)
        self.sockets_final = bridge_sockets(self.bridge.pid)


# ---------------------------------------------------------------------------------------------
# evaluation and report


def evaluate(soak: Soak, args) -> tuple[bool, list[str]]:
    """The pass rule; returns (passed, one line per check). Passed is computed from the checks as
    data, once, at the end: no accumulator a later name could shadow."""
    rules = pass_rules(soak, args)
    return all(held for held, _ in rules), [f"- {'PASS' if held else 'FAIL'}: {text}" for held, text in rules]


def pass_rules(soak: Soak, args) -> list[tuple[bool, str]]:
    """Each check of the pass rule as (held, what it checks with the measured values)."""
    rules: list[tuple[bool, str]] = []

    def check(held: bool, text: str):
        rules.append((bool(held), text))

    load = [s for s in soak.samples if s["phase"] == "load"]
    check(soak.failure_count == 0, f"no lost or corrupted byte, no failed operation ({soak.failure_count} failures)")
    check(not soak.died, "the bridge stayed alive" + (" (it died)" if soak.died else ""))
    if len(load) >= 9:
        warm = int(len(load) * args.warmup_share)
        measured = load[warm:]
        third = len(measured) // 3
        first, last = measured[:third], measured[-third:]

        def level(rows, share):
            values = sorted(s["rss_kib"] for s in rows)
            return values[min(len(values) - 1, int(share * len(values)))]

        # The floor (10th percentile: the size between transfers, after the heap trims) shows
        # memory that is kept; the peak shows buffers that grow. One transfer more at the same
        # moment moves a peak by a few MiB, hence the wider margin there.
        floor_first, floor_last = level(first, 0.1), level(last, 0.1)
        floor_limit = floor_first + max(floor_first * args.rss_margin, args.rss_margin_mib * 1024)
        check(floor_last <= floor_limit,
              f"RSS floor bounded: 10th percentile of the last third of the load {floor_last / 1024:.1f} MiB <= "
              f"that of the first third {floor_first / 1024:.1f} MiB + max({args.rss_margin:.0%}, "
              f"{args.rss_margin_mib:g} MiB) = {floor_limit / 1024:.1f} MiB (after a warm-up of {warm} s)")
        peak_first, peak_last = level(first, 1.0), level(last, 1.0)
        peak_limit = peak_first + max(peak_first * args.rss_peak_margin, args.rss_peak_margin_mib * 1024)
        check(peak_last <= peak_limit,
              f"RSS peak bounded: max of the last third {peak_last / 1024:.1f} MiB <= max of the first third "
              f"{peak_first / 1024:.1f} MiB + max({args.rss_peak_margin:.0%}, {args.rss_peak_margin_mib:g} MiB) = "
              f"{peak_limit / 1024:.1f} MiB")
        fd_first, fd_last = max(s["fds"] for s in first), max(s["fds"] for s in last)
        check(fd_last <= fd_first + args.fd_margin,
              f"descriptors bounded: max of the last third {fd_last} <= max of the first third {fd_first} "
              f"+ {args.fd_margin}")
    else:
        check(False, f"too few load samples ({len(load)}) to judge growth")
    settled = [s for s in soak.samples if s["phase"] == "settled"]
    if settled and not soak.died:
        final = settled[-1]
        check(final["fds"] <= soak.baseline_fds + args.fd_margin_final,
              f"descriptors back near the baseline after the load: {final['fds']} <= idle {soak.baseline_fds} "
              f"+ {args.fd_margin_final}")
        check(final["streams_active"] == 0 and final["console_attachments"] == 0,
              f"no stream or console attachment left open after the load (streams-active={final['streams_active']}, "
              f"console attachments={final['console_attachments']})")
        if soak.gateway:
            rules.extend(soak.gateway.checks(final))
    else:
        check(False, "no samples after the load")
    return rules


def machine(args) -> list[str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    version = subprocess.run([args.bridge, "--version"], capture_output=True, text=True).stdout.strip()
    commit = args.commit
    import grpc

    origin = args.bridge_origin or f"release build of this checkout (make static-release), git {commit}"
    return [
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu}, {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"kernel {platform.release()}",
        f"- load average when starting: {' '.join(open('/proc/loadavg').read().split()[:3])}",
        f"- jmp-bridge {version or '?'}: {origin}; checkout git {commit}",
        f"- client: Python {platform.python_version()}, grpcio {grpc.__version__} (grpc.aio, raw method, "
        f"jumpstarter_protocol messages)",
    ]


def report(soak: Soak, args, started: datetime.datetime, passed: bool, checks: list[str], elapsed: float) -> str:
    samples = soak.samples
    load = [s for s in samples if s["phase"] == "load"]

    def span(key, rows, scale=1.0, fmt="{:.1f}"):
        values = [s[key] / scale for s in rows]
        return (fmt.format(min(values)), fmt.format(max(values))) if values else ("-", "-")

    final = samples[-1] if samples else {}
    idle = [s for s in samples if s["phase"] == "idle"]
    lines = [f"# jmp-bridge soak, {started.strftime('%Y-%m-%d %H:%M %Z')}", ""]
    if args.note:
        lines += [f"**{args.note}**", ""]
    lines += [f"Result: **{'PASS' if passed else 'FAIL'}**", "", *checks, "",
              "## Parameters", "",
              f"- load: {args.minutes:g} min (elapsed in all {elapsed / 60:.1f} min), idle baseline "
              f"{args.idle_seconds:g} s before, settling up to {args.settle_seconds:g} s after",
              f"- bulk echo: 2 workers, {args.bulk_mib} MiB each time, SHA-256 checked; one-way: {args.oneway_mib} MiB "
              "into a digest target (length and SHA-256 checked); "
              f"1-byte round trips: {args.rtt_per_stream} per stream; "
              "cancels: 4 MiB echo cancelled at a random point",
              f"- console: pty route, writer at {args.console_rate / 1024:.0f} KiB/s of numbered 16-byte records, "
              "3 attachment slots (gRPC `jmp-attach: ro`, control socket `attach console ro`, "
              "`jmp-bridge attach --read-only`), 0.5-4 s each, each checked to be a contiguous piece of the output",
              "- serial: a pty standing in for an adapter, unplugged and replugged about every "
              f"{args.serial_seconds:g} s",
              f"- reload: SIGHUP every {args.reload_seconds:g} s, adding or removing a spare unix and pty route",
              "- clients: half on TLS over 127.0.0.1, half on the bridge's Unix-socket listener; two thirds of "
              "the streams on one long-lived connection per listener, a third on a connection of their own",
              *([soak.gateway.parameters()] if soak.gateway else ["- gateway: not soaked (--no-gateway)"]),
              "",
              "## Machine and binary", "", *machine(args), "",
              "## Operations", "",
              "| operation | count | bytes |", "| --- | ---: | ---: |"]
    for op in sorted(soak.counts):
        if op == "console-written":
            continue
        lines.append(f"| {op} | {soak.counts[op]:,} | {soak.bytes.get(op, 0):,} |")
    lines.append(f"| console output written | | {soak.counts.get('console-written', 0):,} |")
    if soak.rtts:
        rtts = sorted(soak.rtts)
        pct = lambda p: rtts[min(len(rtts) - 1, int(p * len(rtts)))] * 1e6  # noqa: E731
        lines += ["", f"1-byte round trips (client-side, Python under load): p50 {pct(0.5):.0f} µs, "
                      f"p99 {pct(0.99):.0f} µs, max {rtts[-1] * 1e6:.0f} µs"]
    rss_min, rss_max = span("rss_kib", samples, 1024)
    fd_min, fd_max = span("fds", samples, fmt="{:.0f}")
    lines += ["", "## Resources (sampled every second)", "",
              "| | min | max | idle baseline | final |", "| --- | ---: | ---: | ---: | ---: |",
              f"| RSS (MiB) | {rss_min} | {rss_max} | {min((s['rss_kib'] for s in idle), default=0) / 1024:.1f} | "
              f"{final.get('rss_kib', 0) / 1024:.1f} |",
              f"| descriptors | {fd_min} | {fd_max} | {min((s['fds'] for s in idle), default=0)} | "
              f"{final.get('fds', '-')} |",
              f"| threads | {span('threads', samples, fmt='{:.0f}')[0]} | {span('threads', samples, fmt='{:.0f}')[1]} "
              f"| | {final.get('threads', '-')} |",
              f"| streams active | | {span('streams_active', load, fmt='{:.0f}')[1]} | | "
              f"{final.get('streams_active', '-')} |",
              "",
              f"Streams opened by the soak: {soak.calls_made:,}. "
              f"Bridge counters at the end: streams-total={final.get('streams_total')} "
              f"streams-failed={final.get('streams_failed')} "
              f"bytes-to-targets={final.get('bytes_to_targets')} bytes-from-targets={final.get('bytes_from_targets')} "
              f"console cuts={final.get('console_cuts')}", ""]
    if soak.gateway:
        lines += [soak.gateway.counters(final), ""]
    idle_kinds, final_kinds = getattr(soak, "fds_idle", {}), getattr(soak, "fds_final", {})
    if final_kinds and idle_kinds != final_kinds:
        lines += ["Descriptors that differ between the idle baseline and the end:", "",
                  "| kind | idle | final |", "| --- | ---: | ---: |"]
        for kind in sorted(set(idle_kinds) | set(final_kinds)):
            if idle_kinds.get(kind, 0) != final_kinds.get(kind, 0):
                lines.append(f"| `{kind}` | {idle_kinds.get(kind, 0)} | {final_kinds.get(kind, 0)} |")
        lines += ["", "The bridge's sockets (`ss -a -n -p`) idle:", "", "```", *soak.sockets_idle, "```", "",
                  "and at the end:", "", "```", *soak.sockets_final, "```", ""]
    base = os.path.splitext(os.path.basename(args.out))[0]
    lines += [f"Plot: `{base}.png`; samples: `{base}.csv`.", ""]
    if soak.failures:
        lines += ["## Failures", "", "```", *soak.failures[:50], "```", ""]
    levels: dict[str, int] = {}
    distinct: dict[str, int] = {}
    with open(soak.log_path, errors="replace") as f:
        for line in f:
            m = re.match(r"\S+ (trace|debug|info|notice|warning|error|critical) ", line)
            if not m:
                continue
            levels[m.group(1)] = levels.get(m.group(1), 0) + 1
            if m.group(1) in ("warning", "error", "critical") or re.search(r"connection closed(:| after)", line):
                key = re.sub(r"\d+", "N", line.split(" ", 1)[1].strip())[:200]
                count, first = distinct.get(key, (0, line.strip()[:400]))
                distinct[key] = (count + 1, first)
    lines += ["## Bridge log", "", "Lines per level: " + ", ".join(f"{k} {v:,}" for k, v in sorted(levels.items())), ""]
    if distinct:
        lines += ["Warnings, errors and connections closed after an error (`connection closed: ...` or `... after an error`): how often each kind (the line with "
                  "its numbers taken out) was logged, and its first occurrence, most frequent first:", "", "```"]
        lines += [f"{n:6}x {first}" for n, first in sorted(distinct.values(), key=lambda v: -v[0])[:20]]
        lines += ["```", ""]
    return "\n".join(lines)


def plot(soak: Soak, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in soak.samples]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    axes[0].plot(t, [s["rss_kib"] / 1024 for s in soak.samples], color="tab:blue")
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].plot(t, [s["fds"] for s in soak.samples], color="tab:orange")
    axes[1].set_ylabel("open descriptors")
    axes[2].plot(t, [s["streams_active"] for s in soak.samples], color="tab:green", label="streams active")
    axes[2].plot(t, [s["console_attachments"] for s in soak.samples], color="tab:purple", label="console attachments")
    if soak.gateway:
        axes[2].plot(t, [s.get("gw_relays", 0) for s in soak.samples], color="tab:red", label="gateway relays")
    axes[2].set_ylabel("count")
    axes[2].set_xlabel("seconds since the bridge started")
    axes[2].legend(loc="upper right")
    for ax in axes:
        ax.axvspan(soak.load_start, soak.load_end, color="0.92", zorder=0)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0].set_title(title + " (grey: load)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)



def stop_children(soak: Soak) -> int | None:
    """Stops everything the soak started; returns the bridge's exit status after SIGTERM."""
    status = None
    for proc in soak.children:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is soak.bridge:
            status = proc.returncode
    return status


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--target":
        return run_target(sys.argv[2], sys.argv[3])
    p = argparse.ArgumentParser()
    p.add_argument("--bridge", required=True)
    p.add_argument("--bridge-origin", default="")
    p.add_argument("--repo", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--note", default="", help="a line at the top of the result (e.g. 'trial run')")
    p.add_argument("--bulk-mib", type=int, default=8)
    p.add_argument("--oneway-mib", type=int, default=16)
    p.add_argument("--rtt-per-stream", type=int, default=200)
    p.add_argument("--console-rate", type=int, default=256 * 1024, help="console output, bytes/s")
    p.add_argument("--serial-seconds", type=float, default=10)
    p.add_argument("--reload-seconds", type=float, default=3)
    p.add_argument("--idle-seconds", type=float, default=5)
    p.add_argument("--settle-seconds", type=float, default=25)
    p.add_argument("--warmup-share", type=float, default=0.1)
    p.add_argument("--rss-margin", type=float, default=0.10)
    p.add_argument("--rss-margin-mib", type=float, default=8)
    p.add_argument("--rss-peak-margin", type=float, default=0.25)
    p.add_argument("--rss-peak-margin-mib", type=float, default=16)
    p.add_argument("--fd-margin", type=int, default=16)
    p.add_argument("--fd-margin-final", type=int, default=0)
    p.add_argument("--no-gateway", dest="gateway", action="store_false",
                   help="without the exporter gateway load (bench/soak_gateway.py)")
    p.add_argument("--gateway-router-age", type=float, default=10,
                   help="the test router sends GOAWAY on connections this old (seconds)")
    p.add_argument("--gateway-listen-seconds", type=float, default=30,
                   help="how long each Listen call stays open before a new one replaces it")
    p.add_argument("--gateway-controller-restart", type=float, default=120,
                   help="restart the test controller this often (seconds; 0: never)")
    p.add_argument("--gateway-controller-down", type=float, default=1,
                   help="how long the test controller stays down in a restart (seconds)")
    args = p.parse_args()

    started = datetime.datetime.now().astimezone()
    # The checkout the binary was built from: taken now, as a commit during the soak changes nothing.
    args.commit = subprocess.run(["git", "-C", args.repo, "describe", "--always", "--dirty"], capture_output=True,
                                 text=True).stdout.strip()
    os.makedirs(args.results, exist_ok=True)
    base = os.path.join(args.results, "soak-" + started.strftime("%Y-%m-%d-%H%M"))
    args.out = base + ".md"
    soak = Soak(args)

    t0 = time.monotonic()
    interrupted = False
    try:
        asyncio.run(soak.run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        soak.fail("interrupted")
    except Exception as error:  # noqa: BLE001 - reported, then everything is stopped
        soak.fail(f"soak driver: {type(error).__name__}: {error}")
    finally:
        soak.writer_stop.set()
        status = stop_children(soak)
        with contextlib.suppress(OSError):
            os.unlink(soak.path("jmp-bridge"))  # the copy that ran
        if soak.serial_master_open():
            os.close(soak.serial_master)
    if status not in (None, 0):
        soak.fail(f"jmp-bridge exited with status {status} after SIGTERM")
    if getattr(soak, "work_lost", False):
        log(f"no result written: the working directory {soak.work}, with the bridge's log, is gone")
        return 1
    if interrupted or not soak.samples or not hasattr(soak, "load_end"):
        log(f"no result written; bridge log and samples kept in {soak.work}")
        for line in soak.failures:
            log(line)
        return 1
    passed, checks = evaluate(soak, args)
    text = report(soak, args, started, passed, checks, time.monotonic() - t0)
    with open(args.out, "w") as f:
        f.write(text)
    shutil.copyfile(soak.path("samples.csv"), base + ".csv")
    try:
        plot(soak, base + ".png", f"jmp-bridge soak {started.strftime('%Y-%m-%d %H:%M')}, {args.minutes:g} min")
    except Exception as error:  # noqa: BLE001 - the result stands without the plot
        log(f"no plot: {type(error).__name__}: {error}")
    for line in checks:
        log(line)
    log(f"result: {'PASS' if passed else 'FAIL'}; written to {args.out} (+ .png, .csv)")
    if passed:
        shutil.rmtree(soak.work, ignore_errors=True)
    else:
        log(f"bridge log and samples kept in {soak.work}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
