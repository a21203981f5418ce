"""jumpstarter 0.9.0's own router-stream client against jmp-bridge over TLS.

The client side is jumpstarter's: ``connect_router_stream`` (exactly what a jumpstarter client or
exporter does with a router endpoint and token) or ``RouterStream`` over a ``grpc.aio`` secure
channel with the ``jumpstarter_protocol`` stubs where a test needs the ``jmp-route`` metadata or
the call's status. The targets are small Unix-socket services run by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import random
import re
import signal
import socket
import time
from contextlib import asynccontextmanager

import anyio
import grpc
import pytest
from anyio import EndOfStream, fail_after, to_thread
from jumpstarter.common.streams import connect_router_stream
from jumpstarter.config.tls import TLSConfigV1Alpha1
from jumpstarter.streams.common import create_memory_stream
from jumpstarter.streams.router import RouterStream
from jumpstarter_protocol import router_pb2, router_pb2_grpc

from conftest import Bridge, digest_after_eof, echo, iso, not_after, sha256_hex, upper_echo

TOKEN = "interop-test-token"
TIMEOUT = 30


# --------------------------------------------------------------------------------------------
# helpers


def credentials(tls, token=TOKEN) -> grpc.ChannelCredentials:
    """What connect_router_stream builds: TLS with our CA plus the bearer token."""
    return grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=tls.cert_pem),
        grpc.access_token_call_credentials(token),
    )


@asynccontextmanager
async def open_channel(bridge, tls, **options):
    # A local subchannel pool gives each channel its own HTTP/2 connection.
    opts = [("grpc.use_local_subchannel_pool", 1), *options.items()]
    async with grpc.aio.secure_channel(bridge.endpoint, credentials(tls), options=opts) as channel:
        yield channel


def start_call(channel, route: str | None = None) -> grpc.aio.StreamStreamCall:
    stub = router_pb2_grpc.RouterServiceStub(channel)
    return stub.Stream(metadata=(("jmp-route", route),) if route is not None else ())


@asynccontextmanager
async def router_stream(bridge, tls, route: str | None = None):
    """A jumpstarter RouterStream on its own channel; yields (stream, call)."""
    async with open_channel(bridge, tls) as channel:
        call = start_call(channel, route)
        async with RouterStream(context=call) as stream:
            yield stream, call


async def receive_all(stream) -> bytes:
    """Everything until the peer's end of stream (GOAWAY / EOF)."""
    chunks = []
    while True:
        try:
            chunks.append(await stream.receive())
        except EndOfStream:
            return b"".join(chunks)


async def receive_exactly(stream, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        data += await stream.receive()
    assert len(data) == count, f"received {len(data)} bytes, expected {count}"
    return bytes(data)


async def connect_router_stream_echo(endpoint: str, token: str, tls_config, message: bytes) -> None:
    """jumpstarter's own client path (``connect_router_stream``, as a Lease uses it) against an
    echo route: ``message`` comes back whole, and the local half-close comes back as the end of
    the stream."""
    local, remote = create_memory_stream()
    async with connect_router_stream(endpoint, token, remote, tls_config, {}):
        await local.send(message)
        assert await receive_exactly(local, len(message)) == message
        await local.send_eof()
        assert await receive_all(local) == b""


def field(line: str, name: str) -> str:
    match = re.search(rf"(?:^|\s){re.escape(name)}=(\S+)", line)
    assert match, f"no {name}= in log line: {line}"
    return match.group(1)


def _config(tls, routes: dict, *, default_route: str | None = None, linger: str | None = None,
            limits: dict | None = None) -> str:
    lines = [
        "listen:",
        "  - address: tcp:127.0.0.1:0",
        f"    tls: {{cert: {tls.cert}, key: {tls.key}}}",
        "    allow-unauthenticated: true",
    ]
    if default_route:
        lines.append(f"default-route: {default_route}")
    lines.append("routes:")
    for name, path in routes.items():
        lines.append(f"  {name}: {{unix: {path}}}")
    if linger:
        lines.append(f"linger: {linger}")
    if limits:
        lines.append("limits:")
        lines += [f"  {key}: {value}" for key, value in limits.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("tls_mode", ["ca", "insecure"])
async def test_round_trip_with_connect_router_stream(start_bridge, unix_server, tls, tls_mode):
    """jumpstarter's connect_router_stream (no jmp-route ⇒ the default route) echoes a line, and
    the local EOF comes back as the end of the stream. ``insecure`` is jumpstarter's
    ``tls: insecure: true`` mode, which fetches the server certificate first."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})
    tls_config = TLSConfigV1Alpha1(ca=tls.ca_base64) if tls_mode == "ca" else TLSConfigV1Alpha1(insecure=True)
    message = b"hello through jmp-bridge\n"

    with fail_after(TIMEOUT):
        await connect_router_stream_echo(bridge.endpoint, TOKEN, tls_config, message)

    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "OK"
    assert field(line, "route") == "echo"
    assert field(line, "bytes-to-target") == str(len(message))
    assert field(line, "bytes-from-target") == str(len(message))


async def test_status_tells_programs_the_bound_port(start_bridge, unix_server, tls):
    """``jmp-bridge status`` is how programs learn what the bridge bound (the demo once read the
    configured port 0 from a warning in the log and failed): its listener line has the real port,
    which serves; in the log, port 0 only ever appears as what was configured."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})
    header, listener, *routes = bridge.status()
    assert header["bridge"] == "jmp-bridge" and header["state"] == "ready", header
    assert listener == {"listener": f"tcp:127.0.0.1:{bridge.port}", "configured": "tcp:127.0.0.1:0",
                        "tls": "on", "auth": "none", "certificate-expires": iso(not_after(tls.cert))}
    assert bridge.port != 0
    assert routes == [{"route": "echo", "type": "unix", "target": str(target.path)}]
    with fail_after(TIMEOUT):
        await connect_router_stream_echo(bridge.endpoint, TOKEN, TLSConfigV1Alpha1(ca=tls.ca_base64), b"bound\n")

    assert not [line for line in bridge.lines() if re.search(r"\baddress=tcp:127\.0\.0\.1:0\b", line)], bridge.log()
    [warning] = [line for line in bridge.lines() if "UNAUTHENTICATED LISTENER" in line]
    assert field(warning, "address") == f"tcp:127.0.0.1:{bridge.port}"


async def test_jmp_route_metadata_selects_the_route(start_bridge, unix_server, tls):
    """``jmp-route`` picks a named route; without it the default route is used."""
    plain = unix_server("plain.sock", echo)
    upper = unix_server("upper.sock", upper_echo)
    bridge = start_bridge({"plain": plain.path, "upper": upper.path}, default_route="plain")

    results = {}
    with fail_after(TIMEOUT):
        for route in (None, "plain", "upper"):
            async with router_stream(bridge, tls, route) as (stream, call):
                await stream.send(b"mixed Case")
                await stream.send_eof()
                results[route] = await receive_all(stream)
                assert await call.code() == grpc.StatusCode.OK

    assert results == {None: b"mixed Case", "plain": b"mixed Case", "upper": b"MIXED CASE"}
    routes = [field(line, "route") for line in bridge.stream_lines(count=3)]
    assert sorted(routes) == ["plain", "plain", "upper"]
    assert len(plain.connections) == 2 and len(upper.connections) == 1


# --------------------------------------------------------------------------------------------
# half-close


async def test_client_half_close_reaches_target_which_still_replies(start_bridge, unix_server, tls):
    """Client GOAWAY ⇒ the target reads EOF; the target's reply, written only after that EOF,
    still reaches the client; then the RPC ends with OK."""
    target = unix_server("digest.sock", digest_after_eof)
    bridge = start_bridge({"digest": target.path})
    parts = [b"first part\n", os.urandom(100_000), b"last part\n"]

    with fail_after(TIMEOUT):
        async with router_stream(bridge, tls) as (stream, call):
            for part in parts:
                await stream.send(part)
            await stream.send_eof()
            reply = await receive_all(stream)
            assert await call.code() == grpc.StatusCode.OK

    payload = b"".join(parts)
    assert reply == f"{len(payload)} {sha256_hex(payload)}\n".encode()
    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "OK"


async def test_target_half_close_reaches_client_which_can_still_send(start_bridge, unix_server, tls):
    """Target shutdown(SHUT_WR) ⇒ the client sees the end of the stream, yet what it sends
    afterwards still reaches the target; the RPC ends with OK once the client is done too."""
    received: queue.Queue[bytes] = queue.Queue()

    def greet_then_listen(conn: socket.socket):
        conn.sendall(b"hello from the target\n")
        conn.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := conn.recv(65536):
            data += chunk
        received.put(bytes(data))
        conn.close()

    target = unix_server("greeter.sock", greet_then_listen)
    bridge = start_bridge({"greeter": target.path})
    after_eof = [b"sent after the target's EOF\n", os.urandom(200_000)]

    with fail_after(TIMEOUT):
        async with router_stream(bridge, tls) as (stream, call):
            assert await receive_all(stream) == b"hello from the target\n"
            for part in after_eof:
                await stream.send(part)
            await stream.send_eof()
            assert await call.code() == grpc.StatusCode.OK
        got = await to_thread.run_sync(received.get, True, TIMEOUT)

    assert got == b"".join(after_eof)
    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "OK"
    assert field(line, "bytes-to-target") == str(len(b"".join(after_eof)))


async def test_linger_does_not_cut_a_client_that_is_still_sending(start_bridge, unix_server, tls):
    """After the target's EOF the client direction stays open: a client still sending after the
    linger time (1 s here) loses nothing and the RPC ends with OK."""
    received: queue.Queue[bytes] = queue.Queue()

    def close_write_then_listen(conn: socket.socket):
        conn.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := conn.recv(65536):
            data += chunk
        received.put(bytes(data))
        conn.close()

    target = unix_server("sink.sock", close_write_then_listen)
    bridge = start_bridge(config=_config(tls, {"sink": target.path}, linger="1s"))
    parts = [f"part {i}\n".encode() for i in range(10)]

    with fail_after(TIMEOUT):
        async with router_stream(bridge, tls) as (stream, call):
            assert await receive_all(stream) == b""
            for part in parts:
                await stream.send(part)
                await anyio.sleep(0.25)  # pacing: the upload outlasts the linger time
            await stream.send_eof()
            assert await call.code() == grpc.StatusCode.OK
        got = await to_thread.run_sync(received.get, True, TIMEOUT)

    assert got == b"".join(parts)


async def test_linger_ends_rpc_when_client_never_ends_its_side(start_bridge, unix_server, tls):
    """A peer that never ends its side after the target closed: the bridge still ends the RPC
    with OK after the linger time instead of holding it forever."""

    def say_bye(conn: socket.socket):
        # Read what the client sent first: closing with unread data would reset the connection.
        assert conn.recv(100) == b"hi"
        conn.sendall(b"bye\n")
        conn.close()

    target = unix_server("bye.sock", say_bye)
    bridge = start_bridge(config=_config(tls, {"bye": target.path}, linger="1s"))

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls) as channel:
            call = start_call(channel)
            await call.write(router_pb2.StreamRequest(payload=b"hi"))
            frames, goaway_at = [], None
            while (frame := await call.read()) != grpc.aio.EOF:
                frames.append(frame)
                if frame.frame_type == router_pb2.FRAME_TYPE_GOAWAY:
                    goaway_at = time.monotonic()
            ended_at = time.monotonic()
            assert await call.code() == grpc.StatusCode.OK

    assert goaway_at is not None, frames
    # The client could still have sent for the linger time; then the RPC ended without it.
    assert 0.5 < ended_at - goaway_at < 10, f"RPC ended {ended_at - goaway_at:.2f} s after GOAWAY (linger 1 s)"

    assert b"".join(f.payload for f in frames if f.frame_type == router_pb2.FRAME_TYPE_DATA) == b"bye\n"
    assert frames[-1].frame_type == router_pb2.FRAME_TYPE_GOAWAY
    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "OK"


# --------------------------------------------------------------------------------------------
# bulk


async def test_large_transfer_sha256(start_bridge, unix_server, tls):
    """64 MiB echoed through the bridge in messages of mixed sizes (up to 1 MiB), both
    directions at once, verified by SHA-256 and by the bridge's byte counts."""
    total = 64 * 1024 * 1024
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})
    data = random.Random(1).randbytes(total)
    sent_digest = hashlib.sha256(data).hexdigest()
    rng = random.Random(2)

    received_digest = hashlib.sha256()
    received = 0

    async def sender(stream):
        view = memoryview(data)
        offset = 0
        while offset < total:
            size = rng.choice((1, 100, 4096, 65536, 65537, 262144, 1 << 20))
            await stream.send(bytes(view[offset:offset + size]))
            offset += size
        await stream.send_eof()

    with fail_after(120):
        async with router_stream(bridge, tls) as (stream, call):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender, stream)
                while True:
                    try:
                        chunk = await stream.receive()
                    except EndOfStream:
                        break
                    assert len(chunk) <= 64 * 1024, "outgoing payloads stay <= 64 KiB by default"
                    received_digest.update(chunk)
                    received += len(chunk)
            assert await call.code() == grpc.StatusCode.OK

    assert received == total
    assert received_digest.hexdigest() == sent_digest
    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "OK"
    assert field(line, "bytes-to-target") == str(total)
    assert field(line, "bytes-from-target") == str(total)


async def test_serve_keeps_transfer_buffers_warm_and_trims_them_unless_glibc_tunables_say(
        start_bridge, unix_server, tls, sockdir):
    """serve makes its malloc settings (MallocTuning; their effect is checked in
    MallocTuningTests) and, after a bulk transfer, gives the free heap back (HeapTrimmer, every
    10 s); an operator's GLIBC_TUNABLES malloc setting wins, and the bridge still carries data."""
    target = unix_server("echo.sock", echo)
    tuned = start_bridge({"echo": target.path}, extra_args=["--log-level", "debug"])
    tuned.wait_for_line(r"malloc: one arena, buffers below 4 MiB from the heap, heap trimmed above 32 MiB free")
    payload = random.Random(3).randbytes(256 * 1024)
    with fail_after(TIMEOUT):
        async with router_stream(tuned, tls) as (stream, call):
            async with anyio.create_task_group() as tg:
                async def send():
                    for _ in range(128):
                        await stream.send(payload)
                    await stream.send_eof()
                tg.start_soon(send)
                assert len(await receive_all(stream)) == 128 * len(payload)
    [trimmed] = await to_thread.run_sync(lambda: tuned.wait_for_line(r"\] heap trimmed$", timeout=15))
    assert int(field(trimmed, "free-bytes")) >= 4 * 1024 * 1024

    args = ["--listen", "tcp:127.0.0.1:0", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
            "--allow-unauthenticated", "--route", f"echo=unix:{target.path}", "--log-level", "debug"]
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}
    operator = Bridge([*args, "--control", str(sockdir / "operator.sock")], cwd=sockdir,
                      control=sockdir / "operator.sock", env=env)
    try:
        operator.wait_ready()
        operator.wait_for_line(r"malloc: settings left to GLIBC_TUNABLES")
        assert not any("one arena" in line for line in operator.lines())
        with fail_after(TIMEOUT):
            async with router_stream(operator, tls) as (stream, call):
                await stream.send(b"still bridged")
                assert await stream.receive() == b"still bridged"
                await stream.send_eof()
    finally:
        assert operator.stop() == 0, operator.log()


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("route", ["no-such-route", "echo.sock", "../echo.sock", "ECHO"])
async def test_unknown_route_is_not_found(start_bridge, unix_server, tls, route):
    """Route names only ever name configured routes, never paths: ``echo.sock`` exists in the
    bridge's working directory, yet only the route ``echo`` reaches it."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls) as channel:
            call = start_call(channel, route)
            assert await call.code() == grpc.StatusCode.NOT_FOUND
            assert route in await call.details()

    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "NOT_FOUND"
    assert target.connections == []


@pytest.mark.parametrize("kind", ["missing", "refused"])
async def test_unreachable_target_is_unavailable(start_bridge, tls, sockdir, kind):
    """A route whose socket does not exist, or exists with nobody listening, fails with
    UNAVAILABLE, as seen by jumpstarter's RouterStream too (BrokenResourceError)."""
    path = sockdir / f"{kind}.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if kind == "refused":
        bound.bind(str(path))  # bound, never listening: connect() is refused
    bridge = start_bridge({"dead": path})

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls) as channel:
            call = start_call(channel)
            stream = RouterStream(context=call)
            with pytest.raises(anyio.BrokenResourceError):
                await stream.receive()
            assert await call.code() == grpc.StatusCode.UNAVAILABLE
            details = await call.details()
            assert "dead" in details, details

    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "UNAVAILABLE"
    bound.close()


async def test_oversized_message_fails_only_its_own_stream(start_bridge, unix_server, tls):
    """A message over the 4 MiB default limit ⇒ RESOURCE_EXHAUSTED for that stream, while other
    streams on the same connection (and failing ones next to them) lose nothing."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})
    data = os.urandom(8 * 1024 * 1024)
    results = {}

    async def good_stream(channel):
        stream = RouterStream(context=start_call(channel))
        async with anyio.create_task_group() as tg:
            async def send():
                for offset in range(0, len(data), 65536):
                    await stream.send(data[offset:offset + 65536])
                await stream.send_eof()
            tg.start_soon(send)
            results["good"] = await receive_all(stream)

    async def failing_call(channel, name, route, request):
        call = start_call(channel, route)
        if request is not None:
            # The bridge may end the call before the whole message is written.
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.write(request)
        results[name] = await call.code()

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls, **{"grpc.max_send_message_length": 16 << 20}) as channel:
            async with anyio.create_task_group() as tg:
                tg.start_soon(good_stream, channel)
                tg.start_soon(failing_call, channel, "oversized", None,
                              router_pb2.StreamRequest(payload=b"x" * (5 * 1024 * 1024)))
                tg.start_soon(failing_call, channel, "unknown", "nope", None)

    assert results["oversized"] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert results["unknown"] == grpc.StatusCode.NOT_FOUND
    assert results["good"] == data
    statuses = sorted(field(line, "status") for line in bridge.stream_lines(count=3))
    assert statuses == ["NOT_FOUND", "OK", "RESOURCE_EXHAUSTED"]


async def _cancel_after_first_bytes(start_bridge, unix_server, tls):
    """Starts a stream, waits until the target has its first bytes, cancels the RPC; returns the
    bridge and what the target read after the cancel (b"" is EOF)."""
    got_data: queue.Queue[bytes] = queue.Queue()
    closed: queue.Queue[bytes] = queue.Queue()

    def watch(conn: socket.socket):
        got_data.put(conn.recv(100))
        try:
            rest = conn.recv(100)
        except ConnectionResetError:
            rest = b""
        closed.put(rest)
        conn.close()

    target = unix_server("watch.sock", watch)
    bridge = start_bridge({"watch": target.path})

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls) as channel:
            call = start_call(channel)
            await call.write(router_pb2.StreamRequest(payload=b"ping"))
            assert await to_thread.run_sync(got_data.get, True, TIMEOUT) == b"ping"
            call.cancel()
            after_cancel = await to_thread.run_sync(closed.get, True, 5)
    return bridge, after_cancel


async def test_client_cancel_closes_the_target_connection(start_bridge, unix_server, tls):
    """Cancelling the RPC (HTTP/2 RST_STREAM) closes the local connection at once: the target
    reads EOF within 5 s (instead of waiting for a linger or a deadline)."""
    bridge, after_cancel = await _cancel_after_first_bytes(start_bridge, unix_server, tls)
    assert after_cancel == b""
    [line] = bridge.stream_lines(count=1)
    assert field(line, "bytes-to-target") == "4"


async def test_client_cancel_is_logged_as_cancelled(start_bridge, unix_server, tls):
    bridge, _ = await _cancel_after_first_bytes(start_bridge, unix_server, tls)
    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "CANCELLED"


# --------------------------------------------------------------------------------------------
# frames


async def test_ping_unknown_and_empty_frames_are_ignored(start_bridge, unix_server, tls):
    """PING, an unknown frame type and an empty DATA frame carry nothing and end nothing."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls) as channel:
            call = start_call(channel)
            for request in (
                router_pb2.StreamRequest(payload=b"one "),
                router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_PING),
                router_pb2.StreamRequest(frame_type=5, payload=b"unknown frames carry nothing"),
                router_pb2.StreamRequest(payload=b""),
                router_pb2.StreamRequest(payload=b"two"),
                router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_GOAWAY),
            ):
                await call.write(request)
            await call.done_writing()
            received = await receive_all(RouterStream(context=call))
            assert await call.code() == grpc.StatusCode.OK

    assert received == b"one two"


async def test_rst_stream_frame_aborts_both_directions(start_bridge, unix_server, tls):
    """An RST_STREAM frame ends the RPC with CANCELLED and closes the target connection."""
    got_data: queue.Queue[bytes] = queue.Queue()
    closed: queue.Queue[bytes] = queue.Queue()

    def watch(conn: socket.socket):
        got_data.put(conn.recv(100))
        data = bytearray()
        try:
            while chunk := conn.recv(100):
                data += chunk
        except ConnectionResetError:
            pass
        closed.put(bytes(data))
        conn.close()

    target = unix_server("watch.sock", watch)
    bridge = start_bridge({"watch": target.path})

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls) as channel:
            call = start_call(channel)
            await call.write(router_pb2.StreamRequest(payload=b"before reset"))
            assert await to_thread.run_sync(got_data.get, True, TIMEOUT) == b"before reset"
            await call.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_RST_STREAM))
            assert await call.code() == grpc.StatusCode.CANCELLED
            assert await to_thread.run_sync(closed.get, True, 5) == b""

    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "CANCELLED"


# --------------------------------------------------------------------------------------------
# concurrency and connection behaviour


async def test_concurrent_streams_keep_their_data_apart(start_bridge, unix_server, tls):
    """3 connections × 8 streams at once, each with its own data, each gets exactly its own back."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})
    rng = random.Random(3)
    payloads = {(c, s): rng.randbytes(rng.randint(1, 512 * 1024)) for c in range(3) for s in range(8)}
    results = {}

    async def one_stream(channel, key):
        stream = RouterStream(context=start_call(channel))
        data = payloads[key]

        async def send():
            for offset in range(0, len(data), 32768):
                await stream.send(data[offset:offset + 32768])
            await stream.send_eof()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            results[key] = await receive_all(stream)

    async def one_connection(c):
        async with open_channel(bridge, tls) as channel:
            async with anyio.create_task_group() as tg:
                for s in range(8):
                    tg.start_soon(one_stream, channel, (c, s))

    with fail_after(60):
        async with anyio.create_task_group() as tg:
            for c in range(3):
                tg.start_soon(one_connection, c)

    for key, data in payloads.items():
        assert results[key] == data, f"stream {key}: {len(results[key])} bytes back, {len(data)} sent"
    lines = bridge.stream_lines(count=24)
    assert [field(line, "status") for line in lines] == ["OK"] * 24
    assert len(target.connections) == 24


async def test_idle_keepalive_pings_are_accepted(start_bridge, unix_server, tls):
    """jumpstarter clients ping without calls in flight (every 20 s; every 0.5 s here): the bridge
    must not answer with GOAWAY (too_many_pings), so the connection stays READY and usable.
    (A grpcio server with its default policy sends that GOAWAY after about 3.5 s of this.)"""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})
    options = {
        "grpc.keepalive_time_ms": 500,
        "grpc.keepalive_timeout_ms": 5000,
        "grpc.http2.max_pings_without_data": 0,
        "grpc.keepalive_permit_without_calls": 1,
    }

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls, **options) as channel:
            for round_trip in range(2):
                stream = RouterStream(context=start_call(channel))
                await stream.send(b"ping?")
                await stream.send_eof()
                assert await receive_all(stream) == b"ping?"
                if round_trip == 0:
                    await anyio.sleep(5)  # idle: the client sends its keepalive pings
                    assert channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY
            assert channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY
    assert len(target.connections) == 2


async def test_sigterm_lets_open_streams_finish(start_bridge, unix_server, tls):
    """SIGTERM: the bridge stops accepting new connections, an open stream keeps working to its
    end, and then the bridge exits 0."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})

    with fail_after(TIMEOUT):
        async with router_stream(bridge, tls) as (stream, call):
            await stream.send(b"before SIGTERM;")
            assert await receive_exactly(stream, 15) == b"before SIGTERM;"
            bridge.proc.send_signal(signal.SIGTERM)
            await to_thread.run_sync(bridge.wait_for_line, r"shutting down")
            # No new connections now.
            async with open_channel(bridge, tls) as other:
                new_call = start_call(other)
                assert await new_call.code() == grpc.StatusCode.UNAVAILABLE
            await stream.send(b" after SIGTERM")
            assert await receive_exactly(stream, 14) == b" after SIGTERM"
            assert bridge.proc.poll() is None, "the bridge exited with a stream still open"
            await stream.send_eof()
            assert await receive_all(stream) == b""
            assert await call.code() == grpc.StatusCode.OK
        assert await to_thread.run_sync(bridge.stop) == 0


async def test_sigterm_leaves_the_last_close_to_the_client(start_bridge, unix_server, tls):
    """Once a draining connection's last stream has ended, the bridge does not close the
    connection under the client: a client still writing then (a WINDOW_UPDATE, a PING) would get
    EPIPE or a TCP reset, and its HTTP/2 stack would turn the call's OK into UNAVAILABLE. The
    connection stays open, and answers a PING sent after the trailers, until the client closes
    it or, for a client that never does, the linger (1 s) ends; then the bridge exits 0."""
    import rawh2

    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})

    def drain_one_connection():
        conn = rawh2.Connection(bridge.port, tls.cert_pem)
        conn.start()
        request = router_pb2.StreamRequest(payload=b"before SIGTERM", frame_type=router_pb2.FRAME_TYPE_DATA)
        conn.send(rawh2.headers(1, rawh2.grpc_request_headers()))
        conn.send(rawh2.data(1, rawh2.grpc_message(request.SerializeToString())))
        conn.frames_until(lambda f: f.kind == rawh2.DATA and f.stream_id == 1)
        bridge.proc.send_signal(signal.SIGTERM)
        # The graceful GOAWAY and its PING; the PING's ACK lets the bridge send the final GOAWAY.
        ping = conn.frames_until(lambda f: f.kind == rawh2.PING and not f.flags & rawh2.ACK)[-1]
        assert ping.kind == rawh2.PING, "no GOAWAY PING after SIGTERM"
        conn.send(rawh2.frame(rawh2.PING, rawh2.ACK, 0, ping.payload))
        conn.send(rawh2.data(1, b"", end_stream=True))
        trailers = conn.frames_until(lambda f: f.kind == rawh2.HEADERS and f.flags & rawh2.END_STREAM)[-1]
        assert trailers.kind == rawh2.HEADERS and trailers.stream_id == 1, "the stream did not end"
        # After the trailers of the last stream: still open, still answering.
        conn.send(rawh2.frame(rawh2.PING, 0, 0, b"lingered"))
        frames = conn.frames_until(lambda f: f.kind == rawh2.PING and f.flags & rawh2.ACK)
        assert frames and frames[-1].payload == b"lingered", f"the bridge closed under the client: {frames}"
        assert bridge.proc.poll() is None
        # A client that never closes: the bridge closes after the linger, and exits.
        conn.frames_until(lambda f: False)  # returns once the bridge has closed; fails after 30 s
        conn.close()

    with fail_after(TIMEOUT):
        await to_thread.run_sync(drain_one_connection)
        assert await to_thread.run_sync(bridge.stop) == 0
    assert field(bridge.stream_lines(count=1)[0], "status") == "OK"


async def test_connection_error_is_logged_and_spares_other_connections(start_bridge, unix_server, tls):
    """Garbage after the HTTP/2 preface is a connection error: the bridge logs it once, with the
    peer, and a stream on another connection goes on."""
    import ssl

    target = unix_server("echo.sock", echo)
    bridge = start_bridge({"echo": target.path})
    with fail_after(TIMEOUT):
        async with router_stream(bridge, tls) as (stream, _call):
            await stream.send(b"before\n")
            assert await receive_exactly(stream, 7) == b"before\n"

            def send_garbage():
                context = ssl.create_default_context(cadata=tls.cert_pem.decode())
                context.set_alpn_protocols(["h2"])
                with socket.create_connection(("127.0.0.1", bridge.port), timeout=TIMEOUT) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost") as conn:
                        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64)
                        while conn.recv(4096):
                            pass

            await to_thread.run_sync(send_garbage)
            await to_thread.run_sync(
                lambda: bridge.wait_for_line(r"connection closed: the client sent bytes that are not an HTTP/2 frame")
            )
            await stream.send(b"after\n")
            assert await receive_exactly(stream, 6) == b"after\n"


# --------------------------------------------------------------------------------------------
# busy targets and the status of a client still sending


async def test_busy_target_is_waited_for_and_no_stream_is_lost(start_bridge, asyncio_echo, tls):
    """1,000 streams at once over 10 connections to an echo route served by an asyncio server
    with a listen backlog of 100 that takes 2 ms over each accept (so the burst fills the
    backlog on any machine): the kernel answers many of the bridge's connects with EAGAIN, which
    the bridge retries instead of failing the stream. Every stream gets every byte back (each
    its own) and ends with OK."""
    path = asyncio_echo("busy.sock", 100, accept_delay_ms=2)
    bridge = start_bridge({"busy": path}, extra_args=["--log-level", "debug"])
    connections, per_connection = 10, 100
    payloads = {
        (c, s): f"stream {c}/{s}:".encode() + random.Random(c * 1000 + s).randbytes(2000)
        for c in range(connections) for s in range(per_connection)
    }
    results: dict = {}
    codes: dict = {}

    async def one_stream(channel, key):
        call = start_call(channel)
        stream = RouterStream(context=call)
        await stream.send(payloads[key])
        await stream.send_eof()
        results[key] = await receive_all(stream)
        codes[key] = await call.code()

    async def one_connection(c):
        async with open_channel(bridge, tls) as channel:
            async with anyio.create_task_group() as tg:
                for s in range(per_connection):
                    tg.start_soon(one_stream, channel, (c, s))

    with fail_after(60):
        async with anyio.create_task_group() as tg:
            for c in range(connections):
                tg.start_soon(one_connection, c)

    lost = [key for key, data in payloads.items() if results.get(key) != data]
    assert not lost, f"{len(lost)} streams did not get their bytes back, e.g. {lost[:5]}"
    assert set(codes.values()) == {grpc.StatusCode.OK}
    statuses = [field(line, "status") for line in bridge.stream_lines(count=1000)]
    assert statuses == ["OK"] * 1000
    # The backlog was met (else this test proves nothing): streams waited for the target.
    waited = sum("connected to a busy target" in line for line in bridge.lines())
    assert waited > 0, "no connect met EAGAIN"


async def _calls_still_sending(channel, count: int, route: str | None, messages: int = 50) -> list:
    """``count`` calls at once, each writing ``messages`` small messages with grpcio's stock
    client and then half-closing, while the bridge fails them; returns each (code, details)."""

    async def one():
        call = start_call(channel, route)
        # A write after the status fails (AioRpcError or InvalidStateError); the status is
        # what the call reports afterwards.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            for i in range(messages):
                await call.write(router_pb2.StreamRequest(payload=b"message %d " % i * 8))
            await call.done_writing()
        return await call.code(), await call.details()

    return await asyncio.gather(*(one() for _ in range(count)))


async def test_a_client_still_sending_gets_the_bridges_status(start_bridge, tls, sockdir):
    """50 streams each sending 50 small messages to a route whose socket is missing: grpcio
    reports the bridge's UNAVAILABLE and its reason for every one of them, not INTERNAL
    ("Internal error from Core", what it reports when a reset races its writes)."""
    bridge = start_bridge({"gone": sockdir / "missing.sock"})

    with fail_after(TIMEOUT):
        async with open_channel(bridge, tls) as channel:
            outcomes = await _calls_still_sending(channel, 50, None)

    codes = [code for code, _ in outcomes]
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 50, sorted({str(c) for c in codes})
    for _, details in outcomes:
        assert "route 'gone': cannot connect to unix:" in details, details
    statuses = [field(line, "status") for line in bridge.stream_lines(count=50)]
    assert statuses == ["UNAVAILABLE"] * 50


async def test_a_client_still_sending_over_the_stream_limit_gets_resource_exhausted(
        start_bridge, unix_server, tls):
    """With max-streams: 1 and one stream open, 50 more streams that keep sending are each told
    RESOURCE_EXHAUSTED with the bridge's reason; the open stream keeps every byte."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge(config=_config(tls, {"echo": target.path}, limits={"max-streams": 1}))

    with fail_after(TIMEOUT):
        async with router_stream(bridge, tls) as (stream, call):
            await stream.send(b"holding the only place;")
            assert await receive_exactly(stream, 23) == b"holding the only place;"
            async with open_channel(bridge, tls) as other:
                outcomes = await _calls_still_sending(other, 50, None)
            await stream.send(b" still here")
            assert await receive_exactly(stream, 11) == b" still here"
            await stream.send_eof()
            assert await receive_all(stream) == b""
            assert await call.code() == grpc.StatusCode.OK

    codes = [code for code, _ in outcomes]
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 50, sorted({str(c) for c in codes})
    for _, details in outcomes:
        assert "max-streams" in details, details
