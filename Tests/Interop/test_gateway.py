"""jmp-bridge's exporter gateway with real peers: the test controller and router of
``deployment/`` (mirroring Jumpstarter's Go services), the stock jumpstarter 0.9.0 exporter and
client, and raw grpcio calls for what the stock peers never do (unknown tokens, every status).

The scenario shared with the direct path (lease, driver calls, 3 × 64 MiB SHA-checked streams)
is in ``test_deployment.py``, which runs it both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import signal
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import anyio
import grpc
import pytest
from anyio import fail_after
from jumpstarter_protocol import jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2, router_pb2_grpc

import rawh2
from conftest import attach_log
from deployment import probe, tokens
from deployment.controller import LeaseState, Status
from deployment.process import Process
from deployment.router_calls import read_payloads, write_payloads
from test_faults import fd_count, tcp_table
from test_metrics import samples, scrape, value
from deployment.fixtures import *  # noqa: F403 - the deployment fixtures
from deployment.fixtures import (
    CHUNK,
    CLIENT_NAME,
    CLIENT_TOKEN,
    EXPORTER_NAME,
    NAMESPACE,
    TIMEOUT,
    echo_transfer,
    gateway_config,
    leased_client,
)


@pytest.fixture
def deployment_path() -> str:
    """Every test here runs through the gateway."""
    return "gateway"


def channel(endpoint: str, tls, token: str | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(tls.cert_pem)
    if token is not None:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    return grpc.aio.secure_channel(endpoint, credentials)


def gateway_line(bridge) -> dict[str, str]:
    return next(item for item in bridge.status() if "gateway" in item)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def first_read(endpoint: str, tls, token: str, payload: bytes):
    """A RouterService.Stream call with ``token`` that writes ``payload``: ``(code, details)`` of
    the status it ends with, or ``("read", payload)`` if a message came back. The refusal of a
    token may surface on the write or on the read."""
    async with channel(endpoint, tls, token) as ch:
        call = router_pb2_grpc.RouterServiceStub(ch).Stream()
        with fail_after(TIMEOUT):
            try:
                await call.write(router_pb2.StreamRequest(payload=payload))
                message = await call.read()
            except grpc.aio.AioRpcError as error:
                return error.code(), error.details()
            return "read", message.payload


# ----------------------------------------------------------------------------------------------
# the controller proxy


@pytest.mark.parametrize("code", [code for code in grpc.StatusCode], ids=lambda code: code.name)
def test_every_status_and_metadata_pass_byte_exact(controller, gateway, tls, event_loop_portal, code):
    """A method no Jumpstarter release has (the probe), unary and streaming, through the gateway
    and directly: status code, details (non-ASCII and '%' included), initial and trailing
    metadata (binary too) and the messages are the same."""
    details = "détails ✓ 100% — {}".format(code.name) if code != grpc.StatusCode.OK else ""
    metadata = (("x-code", str(code.value[0])), ("x-details-bin", details.encode()),
                ("x-custom", "value with spaces"), ("x-custom-bin", bytes(range(256))))
    payload = random.Random(code.value[0]).randbytes(100_000)

    async def outcome(endpoint: str):
        async with channel(endpoint, tls) as ch:
            unary = ch.unary_unary(probe.UNARY)
            echo = ch.stream_stream(probe.ECHO)
            results = []
            with fail_after(TIMEOUT):
                call = unary(payload, metadata=metadata)
                try:
                    response = await call
                except grpc.aio.AioRpcError:
                    response = None
                results.append((response, await call.code(), await call.details(),
                                tuple(await call.initial_metadata()), tuple(await call.trailing_metadata())))
                stream = echo(iter([payload, b"second", b""]), metadata=metadata)
                received = []
                try:
                    async for message in stream:
                        received.append(message)
                except grpc.aio.AioRpcError:
                    pass
                results.append((received, await stream.code(), await stream.details(),
                                tuple(await stream.initial_metadata()), tuple(await stream.trailing_metadata())))
            return results

    direct = event_loop_portal.call(outcome, controller.endpoint)
    through = event_loop_portal.call(outcome, gateway.gateway_endpoint)
    assert direct[0][1] == code and direct[1][1] == code
    assert direct[0][0] == (payload[::-1] if code == grpc.StatusCode.OK else None)
    assert direct[1][0] == [payload, b"second", b""]
    strip = lambda md: tuple((k, v) for k, v in md if k.startswith("x-"))  # noqa: E731 - transport headers differ
    for (d_msg, d_code, d_details, d_initial, d_trailing), (g_msg, g_code, g_details, g_initial, g_trailing) \
            in zip(direct, through):
        assert (g_msg, g_code, g_details) == (d_msg, d_code, d_details)
        assert strip(g_initial) == strip(d_initial) == strip(metadata)
        assert strip(g_trailing) == strip(d_trailing)


def test_a_status_sent_while_the_exporter_still_sends_arrives_whole(controller, gateway, tls, event_loop_portal):
    """The controller ends a streaming call while the exporter has not ended its side: its last
    messages, its trailers (status, details, trailing metadata), then RST_STREAM(NO_ERROR), as
    gRPC servers do. Through the gateway the exporter gets all of it, as directly: the reset is
    passed on only once the trailers are out, since HTTP/2 sends a reset ahead of the frames
    still waiting for the exporter's flow-control window, and drops them. (A reset first makes
    grpcio report INTERNAL "Stream removed" instead of the status.)"""
    first = random.Random(7).randbytes(64 * 1024)
    metadata = (("x-code", str(grpc.StatusCode.NOT_FOUND.value[0])), ("x-details-bin", "gone ✓".encode()),
                ("x-count", "32"))

    async def outcome(endpoint: str):
        async with channel(endpoint, tls) as ch:
            requests: asyncio.Queue = asyncio.Queue()

            async def request_stream():
                yield first
                await requests.get()  # never ends its side before the call has ended

            call = ch.stream_stream(probe.FLOOD)(request_stream(), metadata=metadata)
            received = []
            with fail_after(TIMEOUT):
                try:
                    async for message in call:
                        received.append(message)
                except grpc.aio.AioRpcError:
                    pass
                result = (len(received), all(message == first for message in received), await call.code(),
                           await call.details(), tuple((k, v) for k, v in await call.trailing_metadata()
                                                       if k.startswith("x-")))
            requests.put_nowait(None)  # the call has ended: its request stream may too
            return result

    direct = event_loop_portal.call(outcome, controller.endpoint)
    through = event_loop_portal.call(outcome, gateway.gateway_endpoint)
    assert direct == (32, True, grpc.StatusCode.NOT_FOUND, "gone ✓",
                      (("x-trailer", "trailer-value"), ("x-trailer-bin", first[:64]))), direct
    assert through == direct


def test_controller_down_is_unavailable_and_comes_back(controller, gateway, tls, event_loop_portal):
    """With the controller stopped a call through the gateway fails with UNAVAILABLE (what the
    exporter's retry logic expects, as without the gateway); once it is back, calls succeed."""
    port = controller.controller.port

    async def call() -> grpc.StatusCode:
        async with channel(gateway.gateway_endpoint, tls) as ch:
            with fail_after(TIMEOUT):
                try:
                    await ch.unary_unary(probe.UNARY)(b"ping")
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

    assert event_loop_portal.call(call) == grpc.StatusCode.OK
    event_loop_portal.call(controller.controller.stop)
    assert event_loop_portal.call(call) == grpc.StatusCode.UNAVAILABLE
    upstream = next(item for item in gateway.status() if item.get("role") == "controller")
    assert upstream["state"] in ("failed", "idle"), upstream
    event_loop_portal.call(controller.controller.start, tls.cert_pem, tls.key.read_bytes(), f"127.0.0.1:{port}")
    # Within the backoff after the failed attempt (1 s) calls still fail at once; then one
    # connects. Each call is itself the event waited for; the loop is bounded.
    deadline = time.monotonic() + TIMEOUT
    while (code := event_loop_portal.call(call)) != grpc.StatusCode.OK:
        assert code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, code
    assert int(gateway_line(gateway)["unavailable"]) >= 1


# ----------------------------------------------------------------------------------------------
# the router relay


def test_unknown_token_is_refused_and_never_forwarded(router_process, gateway, tls, event_loop_portal):
    """A token valid for the router but never handed out by the gateway: UNAUTHENTICATED from
    the gateway, and the router never sees a stream."""
    token = tokens.mint(router_process.key, "never-listened")

    assert event_loop_portal.call(first_read, gateway.gateway_endpoint, tls, token, b"secret") == \
        (grpc.StatusCode.UNAUTHENTICATED, "jmp-bridge gateway: unknown router token")
    assert gateway_line(gateway)["refused-tokens"] == "1"
    assert not [line for line in router_process.lines() if line.startswith("stream ")], router_process.log()


def test_an_unknown_token_is_unauthenticated_even_while_the_exporter_writes(router_process, gateway, tls,
                                                                            event_loop_portal):
    """The refusal waits until the exporter has stopped writing: a grpcio client that gets the
    trailers while a write is in flight resets the stream and reports INTERNAL instead of the
    status (see RequestDrain). Large first messages, sent at once, every time UNAUTHENTICATED."""
    token = tokens.mint(router_process.key, "never-listened")

    async def refused_while_writing():
        async with channel(gateway.gateway_endpoint, tls, token) as ch:
            call = router_pb2_grpc.RouterServiceStub(ch).Stream()
            with fail_after(TIMEOUT):
                try:
                    for _ in range(8):
                        await call.write(router_pb2.StreamRequest(payload=b"x" * (512 * 1024)))
                    await call.done_writing()
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    pass  # the call is over; its status says how
                return await call.code(), await call.details()

    results = [event_loop_portal.call(refused_while_writing) for _ in range(10)]
    assert results == [(grpc.StatusCode.UNAUTHENTICATED, "jmp-bridge gateway: unknown router token")] * 10
    assert gateway_line(gateway)["refused-tokens"] == "10"


def test_a_router_stream_with_two_authorization_headers_is_refused_and_never_forwarded(controller, router_process,
                                                                                       gateway, tls, event_loop_portal):
    """Jumpstarter's router refuses a stream with more than one authorization header ("multiple
    authorization headers"); so does the gateway, before it looks the token up. A handed-out router
    token sent on a channel that adds the exporter's own bearer token (two values) is
    UNAUTHENTICATED, neither value reaches the router, and the token still relays on a stream that
    carries it alone."""
    lease_a_raw_exporter(controller, router_process.endpoint)

    def streams_at_router() -> list[str]:
        return [line for line in router_process.lines() if line.startswith("stream ")]

    async def scenario():
        async with channel(gateway.gateway_endpoint, tls, "raw-exporter-token") as exporter_ch, \
                channel(controller.endpoint, tls, CLIENT_TOKEN) as client_ch:
            with fail_after(TIMEOUT):
                listen = await listen_as_raw_exporter(controller, exporter_ch)
                dial = await dial_as_client(client_ch)
                handed_out = (await listen.read()).router_token
                auth = (("authorization", f"Bearer {handed_out}"),)

                twice = router_pb2_grpc.RouterServiceStub(exporter_ch).Stream(metadata=auth)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await twice.write(router_pb2.StreamRequest(payload=b"secret"))
                    await twice.read()
                refused = (await twice.code(), await twice.details())
                forwarded = streams_at_router()

                async with channel(gateway.gateway_endpoint, tls) as relay_ch, \
                        channel(router_process.endpoint, tls) as router_ch:
                    exporter = router_pb2_grpc.RouterServiceStub(relay_ch).Stream(metadata=auth)
                    client = router_pb2_grpc.RouterServiceStub(router_ch).Stream(
                        metadata=(("authorization", f"Bearer {dial.router_token}"),))
                    await exporter.write(router_pb2.StreamRequest(payload=b"alone"))
                    relayed = (await client.read()).payload
                    await exporter.done_writing()
                    await client.done_writing()
                    assert await exporter.read() == grpc.aio.EOF and await client.read() == grpc.aio.EOF
                    codes = (await exporter.code(), await client.code())
            listen.cancel()
        return refused, forwarded, relayed, codes

    refused, forwarded, relayed, codes = event_loop_portal.call(scenario)
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, "jmp-bridge gateway: more than one authorization header")
    assert forwarded == [], router_process.log()
    assert relayed == b"alone" and codes == (grpc.StatusCode.OK, grpc.StatusCode.OK)
    line = gateway_line(gateway)
    assert line["refused-tokens"] == "1" and line["relays-total"] == "1", line
    gateway.wait_for_line(r"gateway: refused a router stream with more than one authorization header")


def test_tokens_are_used_once_and_a_dead_router_fails_one_stream(controller, router_process, gateway, exporter,
                                                                client_config, tls, event_loop_portal):
    """Every token the exporter got (through the rewritten ListenResponse) was used on the
    gateway and is not honoured again; a router that is down fails that one stream with
    UNAVAILABLE while the exporter and its next streams carry on."""
    with leased_client(client_config, event_loop_portal) as (lease, client):
        assert client.children["power"].on() is None
        delivered = controller.read(lambda c: [m.router_token for m in c.delivered])
        assert delivered
        assert int(gateway_line(gateway)["relays-total"]) >= 1
        streams_seen = len([line for line in router_process.lines() if line.startswith("stream ")])

        assert event_loop_portal.call(first_read, gateway.gateway_endpoint, tls, delivered[0], b"replayed") == \
            (grpc.StatusCode.UNAUTHENTICATED, "jmp-bridge gateway: unknown router token")
        assert len([line for line in router_process.lines() if line.startswith("stream ")]) == streams_seen

        # A router that is down: the next Dial names a closed port. The stock exporter's relay
        # for it fails with UNAVAILABLE; the exporter stays, and the next stream works.
        real_router = router_process.endpoint
        controller.read(lambda c: setattr(c, "router_endpoint", f"127.0.0.1:{free_port()}"))

        async def dial_only():
            async with channel(controller.endpoint, tls, CLIENT_TOKEN) as ch:
                md = (("jumpstarter-kind", "Client"), ("jumpstarter-namespace", NAMESPACE),
                      ("jumpstarter-name", CLIENT_NAME))
                with fail_after(TIMEOUT):
                    await jumpstarter_pb2_grpc.ControllerServiceStub(ch).Dial(
                        jumpstarter_pb2.DialRequest(lease_name=lease.name), metadata=md)

        event_loop_portal.call(dial_only)
        gateway.wait_for_line(r"gateway: call failed, upstream unavailable", timeout=TIMEOUT)
        controller.read(lambda c: setattr(c, "router_endpoint", real_router))
        assert client.children["power"].off() is None
        data = random.Random(7).randbytes(4 * 1024 * 1024)

        assert event_loop_portal.call(echo_transfer, client.children["echo"], data) == \
            (len(data), hashlib.sha256(data).hexdigest())

        # The metrics say what the status says (read around the scrape: the exporter's calls go on).
        before = gateway_line(gateway)
        scraped = samples(scrape(gateway.status()[0]["metrics"])[2].decode())
        after = gateway_line(gateway)
        for metric, key in (("jmp_bridge_gateway_relays_total", "relays-total"),
                            ("jmp_bridge_gateway_controller_calls_total", "controller-calls-total"),
                            ("jmp_bridge_gateway_refused_tokens_total", "refused-tokens")):
            assert int(before[key]) <= value(scraped, metric) <= int(after[key]), (metric, before, after)
        assert value(scraped, "jmp_bridge_gateway_refused_tokens_total") == 1
        # 4 MiB each way through the echo driver, with gRPC and protobuf framing on top.
        for direction in ("to_router", "from_router"):
            assert value(scraped, "jmp_bridge_gateway_relay_bytes_total", direction=direction) > len(data)
        assert value(scraped, "jmp_bridge_gateway_upstream_connections", upstream=controller.endpoint,
                     role="controller", state="ready") == 1
        assert value(scraped, "jmp_bridge_gateway_upstream_connections", upstream=controller.endpoint,
                     role="controller", state="failed") == 0
    assert controller.read(lambda c: c.exporters[(NAMESPACE, EXPORTER_NAME)].online)
    assert int(gateway_line(gateway)["unavailable"]) >= 1


def tcp_sockets(pid: int) -> list[tuple[int, int, str]]:
    """``(local port, remote port, state)`` of every TCP socket process ``pid`` holds, from its
    ``/proc/PID/fd`` socket inodes and ``test_faults.tcp_table`` (state ``LISTEN``, ...)."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{name}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])

    def port(address: str) -> int:
        return int(address.rsplit(":", 1)[1], 16)

    return [(port(local), port(remote), state) for inode, (local, remote, state) in tcp_table(pid).items()
            if inode in inodes]


def non_tcp_fds(bridge) -> int:
    """Descriptors of ``bridge`` that are neither TCP sockets nor the runtime's own event
    machinery (``test_faults.fd_count``, less the TCP sockets)."""
    return fd_count(bridge) - len(tcp_sockets(bridge.pid))


def test_every_descriptor_of_a_call_is_closed_on_every_path(controller, router_process, gateway, exporter,
                                                            client_config, tls, event_loop_portal):
    """The gateway's descriptors after calls ending every way: relays carrying data, relays whose
    client left in the middle of a transfer, unknown and replayed tokens, a router that is down,
    controller calls cancelled, failed and ended by deadline. Once the lease is over, every TCP
    socket the gateway holds is accounted for: its listeners, the exporter's own connections to
    it (seen from the exporter's side), and the pooled upstream connections its status lists;
    no relay, listen or router stream is left; nothing else (pipes, files, Unix sockets) grew."""
    gateway_port = int(gateway.gateway_endpoint.rsplit(":", 1)[1])
    controller_port = controller.controller.port
    router_port = int(router_process.endpoint.rsplit(":", 1)[1])
    others_before = non_tcp_fds(gateway)

    async def cut_transfer(echo):
        """An EchoNetwork transfer left after its first echoed bytes, with more still being sent."""
        async with echo.stream_async("connect") as stream:
            async def send():
                for _ in range(64):
                    await stream.send(b"x" * CHUNK)

            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await stream.receive()
                tg.cancel_scope.cancel()

    async def controller_calls():
        async with channel(gateway.gateway_endpoint, tls) as ch:
            with fail_after(TIMEOUT):
                for _ in range(5):
                    # Cancelled by the caller while open.
                    call = ch.stream_stream(probe.ECHO)()
                    await call.write(b"hello")
                    assert await call.read() == b"hello"
                    call.cancel()
                    # Failed by the server.
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await ch.unary_unary(probe.UNARY)(b"x", metadata=(("x-code", "13"),))
                    # Ended by its deadline while the server waits for more.
                    call = ch.stream_stream(probe.ECHO)(timeout=0.2)
                    await call.write(b"wait")
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await call.read()
                        await call.read()

    with leased_client(client_config, event_loop_portal) as (lease, client):
        data = random.Random(3).randbytes(1 << 20)
        assert event_loop_portal.call(echo_transfer, client.children["echo"], data) == \
            (len(data), hashlib.sha256(data).hexdigest())
        for _ in range(3):
            with lease.connect() as other:
                event_loop_portal.call(cut_transfer, other.children["echo"])
        for _ in range(5):
            assert event_loop_portal.call(first_read, gateway.gateway_endpoint, tls, "never-handed-out", b"x")[0] == \
                grpc.StatusCode.UNAUTHENTICATED
        delivered = controller.read(lambda c: [m.router_token for m in c.delivered])
        assert event_loop_portal.call(first_read, gateway.gateway_endpoint, tls, delivered[0], b"x")[0] == \
            grpc.StatusCode.UNAUTHENTICATED
        real_router = router_process.endpoint
        controller.read(lambda c: setattr(c, "router_endpoint", f"127.0.0.1:{free_port()}"))
        try:
            with pytest.raises(Exception):  # noqa: B017 - the stock client's error for a dead router
                with lease.connect() as doomed:
                    doomed.children["power"].on()
        finally:
            controller.read(lambda c: setattr(c, "router_endpoint", real_router))
        event_loop_portal.call(controller_calls)
        assert client.children["power"].on() is None

    def accounted() -> tuple[bool, str]:
        sockets = tcp_sockets(gateway.pid)
        listening = [s for s in sockets if s[2] == "LISTEN"]
        downstream = sorted(s[1] for s in sockets if s[0] == gateway_port and s[2] != "LISTEN")
        exporter_side = sorted(s[0] for s in tcp_sockets(exporter.proc.pid) if s[1] == gateway_port)
        upstream = {port: len([s for s in sockets if s[1] == port]) for port in (controller_port, router_port)}
        rest = [s for s in sockets if s not in listening and s[0] != gateway_port and s[1] not in upstream]
        status = gateway.status()
        pooled = {port: sum(int(item["connections"]) for item in status
                            if item.get("upstream", "").endswith(f":{port}")) for port in upstream}
        line = gateway_line(gateway)
        router_streams = [item["streams"] for item in status if item.get("role") == "router"]
        done = (downstream == exporter_side and upstream == pooled and not rest and line["relays"] == "0"
                and line["listens"] == "0" and set(router_streams) <= {"0"}
                and non_tcp_fds(gateway) <= others_before)
        return done, (f"gateway sockets {sockets}; the exporter's ends of its connections to the gateway "
                      f"{exporter_side}; upstream sockets {upstream}, pooled per status {pooled}; other {rest}; "
                      f"other descriptors {non_tcp_fds(gateway)}, {others_before} before; status {status}")

    deadline = time.monotonic() + TIMEOUT
    while not (result := accounted())[0]:
        assert time.monotonic() < deadline, result[1]
        time.sleep(0.05)
    assert int(gateway_line(gateway)["relays-total"]) >= 5 and int(gateway_line(gateway)["refused-tokens"]) == 6


@pytest.mark.parametrize("gateway_extra", [{"idle-timeout": "1s"}])
def test_unused_router_connections_are_closed_and_forgotten(controller, router_process, gateway, exporter,
                                                            client_config, tls, event_loop_portal):
    """``idle-timeout: 1s``: a router connection without streams is closed and leaves the status
    and the metrics: a router that is down (its failed line) while the lease goes on, the real
    router's once the lease is over; one carrying a relay is kept however long it lasts; the
    controller's is kept; and the next lease connects to the router again."""
    router_port = int(router_process.endpoint.rsplit(":", 1)[1])
    dead = f"127.0.0.1:{free_port()}"

    def routers() -> dict[str, dict]:
        return {item["upstream"]: item for item in gateway.status() if item.get("role") == "router"}

    def wait(condition, what: str):
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {gateway.status()}"
            time.sleep(0.05)

    with leased_client(client_config, event_loop_portal) as (lease, client):
        assert client.children["power"].on() is None
        assert routers()[router_process.endpoint]["streams"] == "1"
        controller.read(lambda c: setattr(c, "router_endpoint", dead))
        try:
            with pytest.raises(Exception):  # noqa: B017 - the stock client's error for a dead router
                with lease.connect() as doomed:
                    doomed.children["power"].on()
        finally:
            controller.read(lambda c: setattr(c, "router_endpoint", router_process.endpoint))
        assert routers()[dead]["state"] == "failed"
        # The dead router's line goes after a second unused; the relay's connection stays.
        wait(lambda: dead not in routers(), "the unused failed router to be forgotten")
        gateway.wait_for_line(rf"upstream={re.escape(dead)} .*gateway: upstream unused, closed and forgotten")
        assert routers()[router_process.endpoint]["state"] == "ready"
        assert client.children["power"].off() is None

    # The lease is over: its relay has ended, and the router's connection goes too.
    wait(lambda: not routers(), "the unused router connection to be closed and forgotten")
    gateway.wait_for_line(
        rf"upstream={re.escape(router_process.endpoint)} .*gateway: upstream unused, closed and forgotten")
    wait(lambda: not [s for s in tcp_sockets(gateway.pid) if s[1] == router_port], "the router sockets to close")
    assert [item["state"] for item in gateway.status() if item.get("role") == "controller"] == ["ready"]
    scraped = samples(scrape(gateway.status()[0]["metrics"])[2].decode())
    assert not [key for key in scraped if key[0] == "jmp_bridge_gateway_upstream_connections"
                and ("role", "router") in key[1]], scraped
    assert value(scraped, "jmp_bridge_gateway_upstream_connections", upstream=controller.endpoint,
                 role="controller", state="ready") == 1

    # The next lease: the router is connected to again.
    with leased_client(client_config, event_loop_portal) as (_, client):
        assert client.children["power"].on() is None
        assert routers()[router_process.endpoint]["state"] == "ready"


async def echo_around(client, first: bytes, second: bytes, between) -> tuple[int, str]:
    """On one EchoNetwork stream of ``client``: sends ``first`` and reads its echo, awaits
    ``between()`` (what the test does to the deployment meanwhile), then sends ``second`` and reads
    its echo; returns the bytes echoed and their SHA-256."""
    digest, count = hashlib.sha256(), 0
    async with client.children["echo"].stream_async("connect") as s:
        async def receive(until: int):
            nonlocal count
            while count < until:
                chunk = await s.receive()
                digest.update(chunk)
                count += len(chunk)

        async def send(data: bytes):
            for offset in range(0, len(data), CHUNK):
                await s.send(data[offset:offset + CHUNK])

        with fail_after(TIMEOUT * 2):
            await send(first)
            await receive(len(first))
            await between()
            await send(second)
            await receive(len(first) + len(second))
    return count, digest.hexdigest()


@pytest.mark.parametrize("router_extra", [["--max-connection-age", "2"]])
def test_a_router_goaway_lets_relays_finish_and_the_drained_connection_closes(controller, router_process, gateway,
                                                                             exporter, client_config,
                                                                             event_loop_portal):
    """The router sends GOAWAY on connections older than 2 s (a Go router with MaxConnectionAge
    does) and would let their calls go on for 10 minutes: an EchoNetwork stream opened before
    the GOAWAY goes on, SHA-checked; a relay opened after it goes over a new connection; and once
    a GOAWAY'd connection's last relay has ended the gateway closes it (gRPC clients do), rather
    than leaving it to the router's grace time. The default idle-timeout (30 min) plays no part."""
    router_port = int(router_process.endpoint.rsplit(":", 1)[1])

    def router_line() -> dict[str, str]:
        return next(item for item in gateway.status() if item.get("upstream") == router_process.endpoint)

    def router_sockets() -> list[tuple[int, int, str]]:
        return [s for s in tcp_sockets(gateway.pid) if s[1] == router_port]

    first, second = random.Random(3).randbytes(8 << 20), random.Random(4).randbytes(8 << 20)
    with leased_client(client_config, event_loop_portal) as (lease, client):
        assert client.children["power"].on() is None

        def another_relay():
            with lease.connect() as other:
                assert other.children["power"].off() is None

        async def across_goaway():
            await anyio.to_thread.run_sync(
                lambda: gateway.wait_for_line(r"gateway: upstream sent GOAWAY", timeout=TIMEOUT))
            await anyio.to_thread.run_sync(another_relay)

        assert event_loop_portal.call(echo_around, client, first, second, across_goaway) == \
            (len(first) + len(second), hashlib.sha256(first + second).hexdigest())
        assert int(router_line()["connects"]) >= 2, router_line()

    # Every relay has ended: each GOAWAY'd connection is closed as soon as it is drained (the
    # last one too, once it is old enough for its own GOAWAY), long before the router would.
    gateway.wait_for_line(r"gateway: upstream connection drained after GOAWAY; closing it", timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while router_sockets():
        assert time.monotonic() < deadline, f"the router connections stay open: {router_sockets()}"
        time.sleep(0.1)
    assert router_line()["state"] == "idle", router_line()


RAW_EXPORTER, RAW_LEASE = "raw", "raw-lease"
RAW_EXPORTER_MD = (("jumpstarter-kind", "Exporter"), ("jumpstarter-namespace", NAMESPACE),
                   ("jumpstarter-name", RAW_EXPORTER))
CLIENT_MD = (("jumpstarter-kind", "Client"), ("jumpstarter-namespace", NAMESPACE), ("jumpstarter-name", CLIENT_NAME))


def lease_a_raw_exporter(controller, router_endpoint: str) -> None:
    """An exporter that is the test itself (``RAW_EXPORTER``), its lease ``RAW_LEASE`` ready for
    driver calls, with the controller naming ``router_endpoint`` in Dial and Listen responses.
    The test calls Listen on the gateway as that exporter and Dial as the client."""

    def lease(c):
        c.add_exporter(NAMESPACE, RAW_EXPORTER, {})
        c.exporters[(NAMESPACE, RAW_EXPORTER)].status = Status.EXPORTER_STATUS_LEASE_READY
        c.exporters[(NAMESPACE, RAW_EXPORTER)].lease = RAW_LEASE
        c.leases[(NAMESPACE, RAW_LEASE)] = LeaseState(NAMESPACE, RAW_LEASE, CLIENT_NAME, "", RAW_EXPORTER,
                                                      timedelta(hours=1), {}, exporter=RAW_EXPORTER)
        c.router_endpoint = router_endpoint

    controller.read(lease)


async def listen_as_raw_exporter(controller, exporter_ch) -> grpc.aio.StreamStreamCall:
    """A ``ControllerService/Listen`` call on ``exporter_ch`` as ``RAW_EXPORTER`` for
    ``RAW_LEASE`` (see :func:`lease_a_raw_exporter`), once the controller has it."""
    listen = jumpstarter_pb2_grpc.ControllerServiceStub(exporter_ch).Listen(
        jumpstarter_pb2.ListenRequest(lease_name=RAW_LEASE), metadata=RAW_EXPORTER_MD)
    await controller.controller.wait_until(lambda c: c.listening(NAMESPACE, RAW_LEASE), TIMEOUT, "Listen")
    return listen


async def dial_as_client(client_ch) -> jumpstarter_pb2.DialResponse:
    """A ``ControllerService/Dial`` for ``RAW_LEASE`` as the client, on ``client_ch``."""
    return await jumpstarter_pb2_grpc.ControllerServiceStub(client_ch).Dial(
        jumpstarter_pb2.DialRequest(lease_name=RAW_LEASE), metadata=CLIENT_MD)


def test_a_listen_response_has_the_gateway_connect_to_its_router_before_the_stream(controller, router_process,
                                                                                  gateway, tls, event_loop_portal):
    """The gateway has no connection to the router yet (the first lease, or the first after
    ``idle-timeout``). As the controller's ``ListenResponse`` naming the router passes, the
    gateway starts connecting to it (TCP and TLS), so that the exporter's
    stream, which comes a moment later over the exporter's own new connection, finds it ready
    or under way instead of starting the handshakes then. Here no stream follows at all: the
    connection is made anyway, and carries nothing."""
    lease_a_raw_exporter(controller, router_process.endpoint)
    assert not [item for item in gateway.status() if item.get("role") == "router"]
    connected = rf"upstream={re.escape(router_process.endpoint)} .*gateway: upstream connected"

    async def listen_and_dial() -> jumpstarter_pb2.ListenResponse:
        async with channel(gateway.gateway_endpoint, tls, "raw-exporter-token") as exporter_ch, \
                channel(controller.endpoint, tls, CLIENT_TOKEN) as client_ch:
            with fail_after(TIMEOUT):
                listen = await listen_as_raw_exporter(controller, exporter_ch)
                await dial_as_client(client_ch)
                response = await listen.read()
                await anyio.to_thread.run_sync(lambda: gateway.wait_for_line(connected, timeout=TIMEOUT))
            listen.cancel()
        return response

    assert event_loop_portal.call(listen_and_dial).router_endpoint == gateway.gateway_endpoint
    router = next(item for item in gateway.status() if item.get("upstream") == router_process.endpoint)
    assert (router["role"], router["streams"]) == ("router", "0") and int(router["connects"]) >= 1, router
    assert gateway_line(gateway)["relays-total"] == "0"
    assert not [line for line in router_process.lines() if line.startswith("stream ")], router_process.log()


@pytest.fixture
def one_call_server(request, tls) -> Process:
    """``deployment/one_call_server.py``: a server that takes one call per connection and leaves
    the streams behind it unprocessed (GOAWAY naming the first), echoing ``RouterService/Stream``
    messages; ``.endpoint`` once it is ready. Indirect parameters are more arguments."""
    server = Process("one-call server", [sys.executable, Path(__file__).parent / "deployment" / "one_call_server.py",
                                         "--listen", "127.0.0.1:0", "--tls-cert", tls.cert, "--tls-key", tls.key,
                                         *getattr(request, "param", [])])
    attach_log(request, server)
    try:
        server.endpoint = server.wait_for_line(r"^ready ", timeout=TIMEOUT)[0].split()[1]
        yield server
    finally:
        status = server.stop()
    assert status == 0, f"the one-call server exited with {status}:\n{server.log()}"


def test_calls_a_server_leaves_unprocessed_are_sent_again(controller, one_call_server, gateway, tls,
                                                          event_loop_portal):
    """Four router streams of one exporter reach the gateway in one read, so the gateway sends
    them on one connection to a router that takes one call per connection (a draining proxy in
    front of it): it serves the first and sends GOAWAY naming it as the last stream, leaving the
    other three unprocessed. The gateway sends each such call again on a new connection, HEADERS
    (the same token) and the DATA it had sent, as gRPC clients do: 3 + 2 + 1 = 6 times, until
    every stream has been served once and echoes what the exporter sent. Without the retries
    three streams fail with UNAVAILABLE ("lost the call")."""
    count = 4
    lease_a_raw_exporter(controller, one_call_server.endpoint)

    async def listen_and_dial() -> list[str]:
        """The router tokens of ``count`` Dials, as the gateway handed them to the exporter."""
        async with channel(gateway.gateway_endpoint, tls, "raw-exporter-token") as exporter_ch, \
                channel(controller.endpoint, tls, CLIENT_TOKEN) as client_ch:
            with fail_after(TIMEOUT):
                listen = await listen_as_raw_exporter(controller, exporter_ch)
                for _ in range(count):
                    await dial_as_client(client_ch)
                responses = [await listen.read() for _ in range(count)]
            listen.cancel()
        assert {response.router_endpoint for response in responses} == {gateway.gateway_endpoint}
        return [response.router_token for response in responses]

    tokens_handed_out = event_loop_portal.call(listen_and_dial)

    # The exporter's side: four streams, each with its first message, in one write.
    conn = rawh2.Connection(int(gateway.gateway_endpoint.rsplit(":", 1)[1]), tls.cert_pem)
    try:
        conn.start()
        burst = b""
        for index, token in enumerate(tokens_handed_out):
            stream_id = 2 * index + 1
            burst += rawh2.headers(stream_id, rawh2.grpc_request_headers([("authorization", f"Bearer {token}")]))
            request = router_pb2.StreamRequest(payload=f"from exporter {index}".encode())
            burst += rawh2.data(stream_id, rawh2.grpc_message(request.SerializeToString()))
        conn.send(burst)

        echoed: dict[int, bytes] = {}
        failed: set[int] = set()

        def collect(f: rawh2.Frame) -> bool:
            """Until each stream has echoed or ended (trailers-only or reset) without an echo."""
            if f.kind == rawh2.DATA and f.payload:
                echoed[f.stream_id] = router_pb2.StreamResponse.FromString(f.payload[5:]).payload
            elif (f.kind == rawh2.HEADERS and f.flags & rawh2.END_STREAM or f.kind == rawh2.RST_STREAM) \
                    and f.stream_id not in echoed:
                failed.add(f.stream_id)
            return len(echoed) + len(failed) == count

        conn.frames_until(collect, timeout=TIMEOUT)
        assert echoed == {2 * i + 1: f"from exporter {i}".encode() for i in range(count)}
    finally:
        conn.close()

    # The echoes may reach the test before the server's last lines come through its stdout pipe.
    # Each retry goes on a connection opened after the previous one's refusal, so once the
    # fourth call's line is there, every refusal's line is too.
    served = [line.split("token=", 1)[1] for line in one_call_server.wait_for_line(r"^call ", count=count,
                                                                                   timeout=TIMEOUT)]
    unprocessed = [line for line in one_call_server.lines() if line.startswith("unprocessed ")]
    assert sorted(served) == sorted(tokens_handed_out) and len(unprocessed) == 6, one_call_server.log()
    line = gateway_line(gateway)
    assert line["retried"] == "6" and line["relays-total"] == str(count) and line["unavailable"] == "0", line
    assert len(gateway.wait_for_line(r"gateway: upstream refused a call unprocessed", count=6)) == 6
    scraped = samples(scrape(gateway.status()[0]["metrics"])[2].decode())
    assert value(scraped, "jmp_bridge_gateway_retried_calls_total") == 6


async def handed_out_token(controller, gateway, tls) -> str:
    """The router token the gateway hands the raw exporter (``lease_a_raw_exporter``) in answer
    to a client's Dial: the exporter's Listen call on the gateway, then the Dial."""
    async with channel(gateway.gateway_endpoint, tls, "raw-exporter-token") as exporter_ch, \
            channel(controller.endpoint, tls, CLIENT_TOKEN) as client_ch:
        with fail_after(TIMEOUT):
            listen = await listen_as_raw_exporter(controller, exporter_ch)
            await dial_as_client(client_ch)
            token = (await listen.read()).router_token
            listen.cancel()
    return token


@contextlib.asynccontextmanager
async def relayed_call(controller, gateway, tls):
    """A router stream opened on the gateway by the raw exporter with the token the gateway
    handed it (``handed_out_token``)."""
    token = await handed_out_token(controller, gateway, tls)
    async with channel(gateway.gateway_endpoint, tls, token) as ch:
        yield router_pb2_grpc.RouterServiceStub(ch).Stream()


async def echo(call, count: int, echoed: list[bytes]) -> None:
    """Writes ``count`` messages on a router stream, reading each one's echo into ``echoed``."""
    for index in range(count):
        await call.write(router_pb2.StreamRequest(payload=f"message {index}".encode()))
        echoed.append((await call.read()).payload)


def test_a_relay_that_ended_both_ways_is_not_reset(controller, one_call_server, gateway, tls, event_loop_portal):
    """A relayed call ends as HTTP/2 streams do: the exporter ends its side, the router sends its
    trailers, and the stream is closed. The gateway sends nothing more on it (RFC 9113, 5.1: no
    RST_STREAM on a closed stream), although the trailers reach it, and are relayed, before
    NIOHTTP2 has marked the stream closed. A reset there was one more frame after the router's
    last one on every relay, and to a router that has closed its socket by then, a segment that
    its kernel answers with a TCP reset."""
    lease_a_raw_exporter(controller, one_call_server.endpoint)

    async def relay() -> tuple:
        echoed = []
        async with relayed_call(controller, gateway, tls) as call:
            with fail_after(TIMEOUT):
                await echo(call, 3, echoed)
                await call.done_writing()
                assert await call.read() == grpc.aio.EOF
                return echoed, await call.code()

    echoed, code = event_loop_portal.call(relay)
    assert (echoed, code) == ([b"message 0", b"message 1", b"message 2"], grpc.StatusCode.OK)
    # The router named the stream last in its GOAWAY: the gateway closes the connection once the
    # stream has closed, after anything it sent on the stream.
    [closed] = one_call_server.wait_for_line(r"^closed stream=", timeout=TIMEOUT)
    assert closed.endswith(" frames-after-end=0"), one_call_server.log()
    [ended] = gateway.wait_for_line(r"gateway: relay ended")
    assert "status=OK " in ended, ended


def test_a_router_back_from_being_down_takes_the_next_stream_at_once(controller, gateway, tls, event_loop_portal,
                                                                     request):
    """The stock exporter opens a new channel, and a new connection, for every router stream,
    so a router back from a restart takes the next stream. Through the gateway, six streams
    while the router is down fail with UNAVAILABLE and the reason, each after its own attempt,
    and leave a backoff that has grown past 10 s; the stream right after the router is back
    connects at once instead of failing until the backoff has passed (as controller calls do,
    as a gRPC channel's would)."""
    port = free_port()
    lease_a_raw_exporter(controller, f"127.0.0.1:{port}")

    async def relay() -> tuple:
        async with relayed_call(controller, gateway, tls) as call:
            with fail_after(TIMEOUT):
                try:
                    await call.write(router_pb2.StreamRequest(payload=b"are you back?"))
                    reply = await call.read()
                except grpc.aio.AioRpcError as error:
                    return error.code(), error.details()
                if reply is grpc.aio.EOF:
                    return await call.code(), await call.details()
                await call.done_writing()
                assert await call.read() == grpc.aio.EOF
                return await call.code(), reply.payload

    for _ in range(6):
        code, details = event_loop_portal.call(relay)
        assert code == grpc.StatusCode.UNAVAILABLE and "Connection refused" in details, details
    router = Process("one-call server", [sys.executable, Path(__file__).parent / "deployment" / "one_call_server.py",
                                         "--listen", f"127.0.0.1:{port}", "--tls-cert", tls.cert,
                                         "--tls-key", tls.key])
    attach_log(request, router)
    try:
        router.wait_for_line(r"^ready ", timeout=TIMEOUT)
        assert event_loop_portal.call(relay) == (grpc.StatusCode.OK, b"are you back?")
    finally:
        assert router.stop() == 0, router.log()


def test_the_exporters_window_updates_stay_with_the_gateway(controller, one_call_server, gateway, tls,
                                                           event_loop_portal):
    """A WINDOW_UPDATE the exporter sends on its router stream opens the gateway's window, not
    the router's: the gateway does not pass it on. Passed on, an exporter's credit let the
    router send more than the gateway's stream window before the gateway had read it (a
    relay's memory no longer bounded), and one sent after the router's trailers made NIOHTTP2
    reset the finished call. The exporter here sends one with an increment no HTTP/2 stack
    would pick, between two messages that are echoed as usual."""
    lease_a_raw_exporter(controller, one_call_server.endpoint)
    increment = 0x00FEDCBA
    router_token = event_loop_portal.call(handed_out_token, controller, gateway, tls)
    conn = rawh2.Connection(int(gateway.gateway_endpoint.rsplit(":", 1)[1]), tls.cert_pem)
    try:
        conn.start()
        messages = [router_pb2.StreamRequest(payload=text).SerializeToString() for text in (b"first", b"second")]
        conn.send(rawh2.headers(1, rawh2.grpc_request_headers([("authorization", f"Bearer {router_token}")]))
                  + rawh2.data(1, rawh2.grpc_message(messages[0]))
                  + rawh2.window_update(1, increment)
                  + rawh2.data(1, rawh2.grpc_message(messages[1]), end_stream=True))
        frames = conn.frames_until(lambda f: f.stream_id == 1 and (f.kind == rawh2.RST_STREAM or
                                                                   f.kind == rawh2.HEADERS and f.flags & rawh2.END_STREAM),
                                   timeout=TIMEOUT)
    finally:
        conn.close()
    echoed = [router_pb2.StreamResponse.FromString(f.payload[5:]).payload
              for f in frames if f.kind == rawh2.DATA and f.stream_id == 1 and f.payload]
    trailers = frames[-1]
    assert echoed == [b"first", b"second"] and trailers.kind == rawh2.HEADERS, frames
    one_call_server.wait_for_line(r"^closed stream=", timeout=TIMEOUT)
    passed_on = [line for line in one_call_server.lines() if line == f"window-update stream=1 increment={increment}"]
    assert not passed_on, one_call_server.log()


@pytest.mark.parametrize("one_call_server", [["--abort-after", "2"]], indirect=True)
def test_a_router_that_drops_the_connection_under_a_call_fails_it_and_says_why(controller, one_call_server,
                                                                               gateway, tls, event_loop_portal):
    """The router echoes two messages of a relayed call, then sends GOAWAY with INTERNAL_ERROR
    and closes the connection (a router that crashed, an ingress cut off). The exporter's call
    ends with UNAVAILABLE, "lost the call" and why, as a direct call whose connection broke; the
    gateway's log says what happened: the GOAWAY's error code and debug text, and the relay's
    end, a warning."""
    lease_a_raw_exporter(controller, one_call_server.endpoint)

    async def relay() -> tuple:
        echoed = []
        async with relayed_call(controller, gateway, tls) as call:
            with fail_after(TIMEOUT):
                try:
                    await echo(call, 3, echoed)
                except grpc.aio.AioRpcError as error:
                    return echoed, error.code(), error.details()
            return echoed, None, None

    echoed, code, details = event_loop_portal.call(relay)
    assert echoed == [b"message 0", b"message 1"], (echoed, code, details)
    assert code == grpc.StatusCode.UNAVAILABLE and re.fullmatch(
        rf"jmp-bridge gateway: lost the call to {re.escape(one_call_server.endpoint)} "
        r"\(the (server closed the )?connection( closed)?\)", details), (code, details)
    one_call_server.wait_for_line(r"^aborted stream=", timeout=TIMEOUT)
    [goaway] = gateway.wait_for_line(r"gateway: upstream sent GOAWAY with an error")
    assert "warning" in goaway.split("gateway:")[0] and "error-code=HTTP2ErrorCode<0x2 Internal Error>" in goaway \
        and "debug=test abort error-code" in goaway and f"upstream={one_call_server.endpoint}" in goaway, goaway
    [ended] = gateway.wait_for_line(r"gateway: relay ended")
    assert "warning" in ended.split("gateway:")[0] and f"status=UNAVAILABLE: {details} " in ended, ended
    # The drain bookkeeping does not mistake the lost call's end for the connection's drain.
    gateway.wait_for_line(rf"upstream={re.escape(one_call_server.endpoint)} .*gateway: upstream connection closed")
    assert "drained after GOAWAY" not in gateway.log(), gateway.log()


@pytest.mark.parametrize("router_extra", [["--max-connection-age", "1"]])
def test_relays_under_goaway_churn_deliver_every_byte(controller, router_process, gateway, tls,
                                                      event_loop_portal):
    """For 15 s, four workers relay one stream after another through the gateway (each worker
    an exporter connection to the gateway, client sides straight to the router) while the router
    sends GOAWAY on every connection older than 1 s: each stream moves 64 KiB to 1 MiB each way,
    SHA-checked, and one in five (at most 40 a worker, well within the 200 resets in 30 s a
    connection may send) is cancelled by the exporter at a random point, after which the
    client's side must end too. No relay fails otherwise, no byte is lost, the gateway keeps opening
    new router connections as the old ones drain, and afterwards no relay is left open."""
    lease_a_raw_exporter(controller, router_process.endpoint)
    duration, workers, cancels_per_worker = 15.0, 4, 40
    outcomes: list[tuple[str, int]] = []  # (how it ended, worker)

    async def churn():
        loop = asyncio.get_running_loop()
        handed_out: dict[str, asyncio.Future] = {}
        async with channel(gateway.gateway_endpoint, tls, "raw-exporter-token") as listen_ch, \
                channel(controller.endpoint, tls, CLIENT_TOKEN) as controller_ch:
            listen = await listen_as_raw_exporter(controller, listen_ch)

            async def dispatch():
                async for response in listen:
                    assert response.router_endpoint == gateway.gateway_endpoint
                    handed_out.setdefault(response.router_token, loop.create_future()).set_result(None)

            async def relay(rng: random.Random, exporter_ch, may_cancel: bool) -> str:
                # The client side on a channel of its own, as the stock client opens one per stream
                # (a grpc core client sharing one connection with the churning router now and then
                # loses a stream started just as the router closes it: not the gateway's business).
                async with channel(router_process.endpoint, tls) as router_ch:
                    return await client_and_exporter(rng, exporter_ch, router_ch, may_cancel)

            async def client_and_exporter(rng: random.Random, exporter_ch, router_ch, may_cancel: bool) -> str:
                dial = await dial_as_client(controller_ch)
                await handed_out.setdefault(dial.router_token, loop.create_future())
                auth = (("authorization", f"Bearer {dial.router_token}"),)
                exporter = router_pb2_grpc.RouterServiceStub(exporter_ch).Stream(metadata=auth)
                client = router_pb2_grpc.RouterServiceStub(router_ch).Stream(metadata=auth)
                up, down = rng.randbytes(rng.randint(64 << 10, 1 << 20)), rng.randbytes(rng.randint(64 << 10, 1 << 20))
                if may_cancel and rng.random() < 0.2:
                    # The exporter gives up part way, once the router pairs the calls (a call that
                    # arrives after its peer left waits for a new one): both calls end.
                    await exporter.write(router_pb2.StreamRequest(payload=up[:CHUNK]))
                    assert (await client.read()).payload == up[:CHUNK]
                    results = await asyncio.gather(write_payloads(exporter, up[CHUNK:], rng.randint(0, len(up) - CHUNK)),
                                                   write_payloads(client, down), read_payloads(exporter), read_payloads(client),
                                                   return_exceptions=True)
                    # The router ends the client's call (as the Go router does, with OK for a call
                    # that was waiting, else CANCELLED): it ends, whatever its status.
                    assert exporter.cancelled() and await client.code() is not None, results
                    return "cancelled"
                _, _, to_exporter, to_client = await asyncio.gather(
                    write_payloads(exporter, up), write_payloads(client, down), read_payloads(exporter), read_payloads(client))
                assert (len(to_exporter), len(to_client)) == (len(down), len(up))
                assert hashlib.sha256(to_exporter).digest() == hashlib.sha256(down).digest()
                assert hashlib.sha256(to_client).digest() == hashlib.sha256(up).digest()
                assert (await exporter.code(), await client.code()) == (grpc.StatusCode.OK, grpc.StatusCode.OK)
                return "ok"

            async def worker(index: int) -> None:
                rng = random.Random(index)
                end = time.monotonic() + duration
                # Its own connection to the gateway (the stock exporter opens one per stream).
                async with channel(gateway.gateway_endpoint, tls) as exporter_ch:
                    while time.monotonic() < end:
                        with fail_after(TIMEOUT):
                            may_cancel = outcomes.count(("cancelled", index)) < cancels_per_worker
                            outcomes.append((await relay(rng, exporter_ch, may_cancel), index))

            dispatcher = asyncio.ensure_future(dispatch())
            try:
                await asyncio.gather(*(worker(index) for index in range(workers)))
            finally:
                listen.cancel()
                dispatcher.cancel()

    event_loop_portal.call(churn)
    router = next(item for item in gateway.status() if item.get("upstream") == router_process.endpoint)
    ends = [end for end, _ in outcomes]
    assert ends.count("ok") >= 8 and int(router["connects"]) >= 3, (ends, router)
    deadline = time.monotonic() + TIMEOUT
    while gateway_line(gateway)["relays"] != "0":
        assert time.monotonic() < deadline, gateway.status()
        time.sleep(0.1)
    line = gateway_line(gateway)
    assert line["unavailable"] == "0" and line["relays-total"] == str(len(ends)), (line, ends)
    # Each relay's log line says how it ended: OK, or cancelled by the exporter.
    ended = [re.search(r" status=(.*) \[JMPGateway\]", entry).group(1)
             for entry in gateway.wait_for_line(r"gateway: relay ended", count=len(ends))]
    assert sorted(ended) == sorted("OK" if end == "ok" else "CANCELLED (exporter)" for end in ends)


def test_controller_restart_keeps_relays_and_the_exporter_comes_back(controller, router_process, gateway,
                                                                     exporter, client_config, tls,
                                                                     event_loop_portal):
    """The controller restarts (same port, state kept) while an EchoNetwork stream is open: the
    stream goes on to the end (it is a router relay, not a controller call), and the exporter's
    Status and Listen streams, broken with UNAVAILABLE, are opened again through the gateway
    (what the stock exporter does without the gateway too)."""
    port = controller.controller.port
    with leased_client(client_config, event_loop_portal) as (lease, client):
        before = controller.read(lambda c: len(c.calls))
        reopened = lambda c: {call.method for call in c.calls[before:]  # noqa: E731
                              if call.identity.kind == "Exporter"} >= {"Status", "Listen"}
        first, second = random.Random(1).randbytes(8 << 20), random.Random(2).randbytes(8 << 20)

        async def restart():
            await controller.controller.stop()
            await controller.controller.start(tls.cert_pem, tls.key.read_bytes(), f"127.0.0.1:{port}")
            await controller.controller.wait_until(reopened, TIMEOUT, "the exporter's Status and Listen streams again")

        assert event_loop_portal.call(echo_around, client, first, second, restart) == \
            (len(first) + len(second), hashlib.sha256(first + second).hexdigest())
        # The lease goes on: a driver call after the restart.
        assert client.children["power"].on() is None
    assert controller.read(lambda c: c.exporters[(NAMESPACE, EXPORTER_NAME)].online)


def test_stopping_ends_controller_calls_at_once(controller, gateway, tls, event_loop_portal):
    """SIGTERM while a long controller call is open (an exporter's Listen and Status calls never
    end by themselves): the call ends with UNAVAILABLE "stopping" at once, so the bridge exits 0
    without waiting out its 30 s grace time."""
    async def open_call():
        ch = channel(gateway.gateway_endpoint, tls)
        call = ch.stream_stream(probe.ECHO)()
        await call.write(b"hello")
        assert await call.read() == b"hello"
        return ch, call

    ch, call = event_loop_portal.call(open_call)

    async def outcome():
        with fail_after(TIMEOUT):
            try:
                await call.read()
            except grpc.aio.AioRpcError as error:
                return error.code(), error.details()
            finally:
                await ch.close()
            return "read", None

    started = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert event_loop_portal.call(outcome) == (grpc.StatusCode.UNAVAILABLE, "jmp-bridge gateway: stopping")
    assert gateway.proc.wait(timeout=TIMEOUT) == 0, gateway.log()
    assert time.monotonic() - started < 20, "the bridge waited for the call instead of ending it"


def probe_outcome(event_loop_portal, bridge, tls) -> tuple:
    """One unary probe call through the gateway: ``(code, details)`` of its error, or
    ``("answered", None)``."""
    async def call():
        async with channel(bridge.gateway_endpoint, tls) as ch:
            with fail_after(TIMEOUT):
                try:
                    await ch.unary_unary(probe.UNARY)(b"ping")
                except grpc.aio.AioRpcError as error:
                    return error.code(), error.details()
                return "answered", None

    return event_loop_portal.call(call)


def test_a_server_that_never_finishes_tls_is_unavailable(start_bridge, tls, event_loop_portal):
    """A controller that accepts TCP but never answers the TLS handshake: the call fails with
    UNAVAILABLE naming the handshake once `connect-timeout` has passed, instead of hanging."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes TCP handshakes; nothing ever reads or writes
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        bridge = start_bridge(config=gateway_config(endpoint, tls, **{"connect-timeout": "1s"}))
        code, details = probe_outcome(event_loop_portal, bridge, tls)
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert details == f"jmp-bridge gateway: {endpoint} unreachable: TLS handshake timed out"


def test_a_controller_certificate_the_gateway_does_not_trust_is_unavailable_and_says_why(
        start_bridge, controller, tls, tmp_path, event_loop_portal):
    """The real controller's certificate does not chain to `gateway.controller.ca` (the commonest
    upstream mistake): the exporter's call fails with UNAVAILABLE, as it would directly, and
    its message, the log and `status` say which CA file the certificate was checked against,
    instead of BoringSSL's error string with the build path in it."""
    from test_faults import other_certificate

    other = tmp_path / "other-ca.pem"
    other.write_bytes(other_certificate(tmp_path))
    bridge = start_bridge(config=gateway_config(controller.endpoint, tls, ca=other))
    code, details = probe_outcome(event_loop_portal, bridge, tls)
    reason = f"TLS: the server's certificate does not chain to the CA certificates in {other}"
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert details == f"jmp-bridge gateway: {controller.endpoint} unreachable: {reason}"
    bridge.wait_for_line(re.escape(f"error={reason} ") + r".*gateway: cannot connect upstream")
    upstream = next(item for item in bridge.status() if item.get("upstream") == controller.endpoint)
    assert upstream["state"] == "failed" and upstream["error"] == reason, upstream
    assert "OPENSSL_internal" not in bridge.log()
