"""A whole Jumpstarter deployment with real peers, directly and through jmp-bridge's gateway.

    stock client ──▶ test controller ◀── stock exporter (``jmp run``-style subprocess, real YAML)
         └────────▶ test router ◀────────────┘      (each client connection = one routed stream)

On the ``gateway`` path (``deployment_path``) the exporter's YAML names jmp-bridge's gateway as
its endpoint, and every arrow from the exporter goes through it.

The controller (``deployment/controller.py``) and router (``deployment/router.py``) mirror
Jumpstarter's Go ``controller_service.go`` and ``router_service.go``; the exporter and client
are jumpstarter 0.9.0 itself, driving the MockPower and EchoNetwork drivers. The fixtures come
from ``deployment/fixtures.py`` (its docstring explains each one).

The direct path proves the harness; the gateway path runs the same assertions with the exporter
reaching the controller and (through the rewritten ``router_endpoint``) the router only via the
gateway, plus what the gateway itself reports. Gateway-only cases are in ``test_gateway.py``.
"""

from __future__ import annotations

import hashlib
import random
import re
import signal

import anyio
import grpc
import pytest
from anyio import fail_after
from jumpstarter_driver_power.common import PowerReading
from jumpstarter_protocol import jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2, router_pb2_grpc

from deployment import tokens
from deployment.controller import Status
from deployment.fixtures import *  # noqa: F403 - the deployment fixtures
from deployment.fixtures import (
    CLIENT_NAME,
    CLIENT_TOKEN,
    EXPORTER_NAME,
    EXPORTER_TOKEN,
    NAMESPACE,
    TIMEOUT,
    echo_transfer,
    leased_client,
)

#: Bytes each EchoNetwork stream carries (both directions at once) and how many run concurrently.
STREAM_BYTES = 64 * 1024 * 1024
STREAMS = 3


def test_lease_driver_calls_and_concurrent_streams(controller, router_process, exporter, client_config,
                                                   event_loop_portal, gateway_bridge):
    """Lease → MockPower calls → 3 concurrent EchoNetwork streams of 64 MiB each, SHA-256 checked
    → release; every hop went where the deployment says (on the gateway path: the exporter's side
    of every routed stream was a relay of the gateway's)."""
    with leased_client(client_config, event_loop_portal) as (lease, client):
        assert lease.exporter_name == EXPORTER_NAME
        power = client.children["power"]
        assert power.on() is None
        assert power.off() is None
        assert list(power.read()) == [PowerReading(voltage=0.0, current=0.0), PowerReading(voltage=5.0, current=2.0)]

        payloads = [random.Random(seed).randbytes(STREAM_BYTES) for seed in range(STREAMS)]
        results: list[tuple[int, str] | None] = [None] * STREAMS

        async def transfer_all():
            with fail_after(TIMEOUT * 2):
                async with anyio.create_task_group() as tg:
                    for index, data in enumerate(payloads):
                        async def one(index=index, data=data):
                            results[index] = await echo_transfer(client.children["echo"], data)
                        tg.start_soon(one)

        event_loop_portal.call(transfer_all)
        assert results == [(len(data), hashlib.sha256(data).hexdigest()) for data in payloads]

        # While leased: the exporter said LEASE_READY and listens for the lease.
        assert controller.read(lambda c: c.exporters[(NAMESPACE, EXPORTER_NAME)].status) == \
            Status.EXPORTER_STATUS_LEASE_READY
        lease_name = lease.name

    # Released by the client; the exporter learns it from its Status stream and is available again.
    controller.wait_until(
        lambda c: c.leases[(NAMESPACE, lease_name)].released
        and (e := c.exporters[(NAMESPACE, EXPORTER_NAME)]).lease is None
        and e.status == Status.EXPORTER_STATUS_AVAILABLE,
        what="the lease to end and the exporter to report AVAILABLE")

    # Every Dial's token reached the exporter through Listen, and the router paired the client's
    # and the exporter's streams by that token's sub.
    dials = controller.read(lambda c: list(c.dials))
    delivered = controller.read(lambda c: [m.router_token for m in c.delivered])
    assert dials and [dial.exporter_token for dial in dials] == delivered
    assert all(dial.exporter_token == dial.router_token for dial in dials)  # as the Go controller
    assert all(dial.lease == lease_name and dial.client == CLIENT_NAME for dial in dials)
    assert all(dial.router_endpoint == router_process.endpoint for dial in dials)
    assert all(tokens.verify(router_process.key, dial.router_token) == dial.sub for dial in dials)
    paired = router_process.paired()
    assert {dial.sub for dial in dials} >= set(paired) and paired, router_process.log()
    # The bulk data crossed the router: one paired stream (the client's connection) carried it.
    router_process.wait_for_line(r"bytes-to-second=", timeout=TIMEOUT, count=len(paired))
    busiest = max(router_process.forwarded().values(), key=min)
    assert min(busiest) >= STREAMS * STREAM_BYTES, router_process.log()

    if gateway_bridge is not None:
        # One relay per paired stream, logged at its end; the busiest carried the bulk data.
        ended = gateway_bridge.wait_for_line(r"gateway: relay ended", count=len(paired), timeout=TIMEOUT)
        relayed = [int(re.search(r"bytes-to-exporter=(\d+)", line).group(1)) for line in ended]
        assert max(relayed) >= STREAMS * STREAM_BYTES, ended
        assert all(f"router={router_process.endpoint}" in line for line in ended), ended
        gateway = next(item for item in gateway_bridge.status() if "gateway" in item)
        assert int(gateway["relays-total"]) >= len(paired) and gateway["refused-tokens"] == "0", gateway

    # Each side identified itself as a real controller needs it to.
    calls = controller.read(lambda c: list(c.calls))
    exporter_calls = {call.method for call in calls if call.identity.kind == "Exporter"}
    assert {"Register", "Status", "ReportStatus", "Listen"} <= exporter_calls
    assert {"CreateLease", "GetLease", "Dial", "DeleteLease"} <= {
        call.method for call in calls if call.identity.kind == "Client"}
    for call in calls:
        expected = (EXPORTER_NAME, EXPORTER_TOKEN) if call.identity.kind == "Exporter" else (CLIENT_NAME, CLIENT_TOKEN)
        assert (call.identity.namespace, call.identity.name, call.identity.token) == (NAMESPACE, *expected), call


def test_exporter_serves_consecutive_leases(controller, router_process, exporter, client_config,
                                           event_loop_portal):
    """After a lease ends the exporter takes the next one: a new Listen, new Dials, driver calls.
    The second lease's Dials give each side its own token for the stream (same sub)."""
    names = []
    for index in range(2):
        controller.read(lambda c: setattr(c, "distinct_tokens", index == 1))
        with leased_client(client_config, event_loop_portal) as (lease, client):
            assert client.children["power"].on() is None
            names.append(lease.name)
        controller.wait_until(
            lambda c: (e := c.exporters[(NAMESPACE, EXPORTER_NAME)]).lease is None
            and e.status == Status.EXPORTER_STATUS_AVAILABLE,
            what="the exporter to be available again")
    assert names[0] != names[1]
    listens = controller.read(lambda c: [call for call in c.calls if call.method == "Listen"])
    assert len(listens) >= 2
    dials = controller.read(lambda c: list(c.dials))
    assert {dial.lease for dial in dials} == set(names)
    second = [dial for dial in dials if dial.lease == names[1]]
    assert second and all(dial.exporter_token != dial.router_token for dial in second)
    assert set(router_process.paired()) & {dial.sub for dial in second}, router_process.log()


#: A second exporter on the same host, with its own name and labels (and the same endpoint).
SECOND_EXPORTER = "exporter-2"
SECOND_LABELS = {"board": "mock-b", "site": "interop"}
#: Bytes each of the two exporters' EchoNetwork streams carries while the other's runs.
SHARED_BYTES = 16 * 1024 * 1024


def test_two_exporters_on_one_host_share_the_gateway(controller, router_process, start_exporter, client_config,
                                                     event_loop_portal, gateway_bridge):
    """Two exporters on one host with the same ``endpoint:`` (one gateway serves several), each
    leased by its own client at the same time: driver calls, then a 16 MiB EchoNetwork stream
    through each at once, SHA-256 checked. On the gateway path the gateway listens for both
    leases (its status) and logs every relay under the exporter whose Listen received the token,
    with that exporter's lease."""
    controller.read(lambda c: c.add_exporter(NAMESPACE, SECOND_EXPORTER, SECOND_LABELS))
    start_exporter()
    start_exporter(name=SECOND_EXPORTER)
    payloads = {name: random.Random(name).randbytes(SHARED_BYTES) for name in (EXPORTER_NAME, SECOND_EXPORTER)}
    results: dict[str, tuple[int, str]] = {}
    with leased_client(client_config, event_loop_portal, "board=mock") as (lease_a, client_a), \
            leased_client(client_config, event_loop_portal, "board=mock-b") as (lease_b, client_b):
        leases = {EXPORTER_NAME: lease_a.name, SECOND_EXPORTER: lease_b.name}
        clients = {EXPORTER_NAME: client_a, SECOND_EXPORTER: client_b}
        assert (lease_a.exporter_name, lease_b.exporter_name) == (EXPORTER_NAME, SECOND_EXPORTER)
        for client in clients.values():
            assert client.children["power"].on() is None

        async def transfer_both():
            with fail_after(TIMEOUT * 2):
                async with anyio.create_task_group() as tg:
                    for name, client in clients.items():
                        async def one(name=name, client=client):
                            results[name] = await echo_transfer(client.children["echo"], payloads[name])
                        tg.start_soon(one)

        event_loop_portal.call(transfer_both)
        if gateway_bridge is not None:
            listening = sorted((item["listen"], item["lease"]) for item in gateway_bridge.status()
                               if "listen" in item and "lease" in item)
            assert listening == sorted((f"{NAMESPACE}/{name}", lease) for name, lease in leases.items()), \
                gateway_bridge.status()
    assert results == {name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in payloads.items()}

    dials = controller.read(lambda c: list(c.dials))
    assert {dial.lease for dial in dials} == set(leases.values())
    if gateway_bridge is not None:
        paired = router_process.paired()
        ended = gateway_bridge.wait_for_line(r"gateway: relay ended", count=len(paired), timeout=TIMEOUT)
        for name, lease in leases.items():
            mine = [line for line in ended if f"exporter={NAMESPACE}/{name} " in line]
            assert mine and all(f"lease={lease} " in line for line in mine), ended
            relayed = max(int(re.search(r"bytes-to-exporter=(\d+)", line).group(1)) for line in mine)
            assert relayed >= SHARED_BYTES, ended
        gateway = next(item for item in gateway_bridge.status() if "gateway" in item)
        assert gateway["refused-tokens"] == "0", gateway


def test_exporter_unregisters_when_stopped(controller, exporter):
    """SIGTERM makes the stock exporter report OFFLINE, Unregister and exit with 143."""
    exporter.proc.terminate()
    controller.wait_until(lambda c: any(call.method == "Unregister" for call in c.calls),
                          what="Unregister")
    assert controller.read(lambda c: c.exporters[(NAMESPACE, EXPORTER_NAME)].status) == Status.EXPORTER_STATUS_OFFLINE
    assert exporter.proc.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM, exporter.log()


# ----------------------------------------------------------------------------------------------
# the controller and the router on their own: what the deployment test relies on


@pytest.mark.parametrize("metadata, code", [
    ((), grpc.StatusCode.UNAUTHENTICATED),
    ((("jumpstarter-kind", "Exporter"), ("jumpstarter-namespace", NAMESPACE)), grpc.StatusCode.UNAUTHENTICATED),
    ((("jumpstarter-kind", "Client"), ("jumpstarter-namespace", NAMESPACE), ("jumpstarter-name", EXPORTER_NAME)),
     grpc.StatusCode.INVALID_ARGUMENT),
    ((("jumpstarter-kind", "Exporter"), ("jumpstarter-namespace", NAMESPACE), ("jumpstarter-name", "unknown")),
     grpc.StatusCode.NOT_FOUND),
    ((("jumpstarter-kind", "Exporter"), ("jumpstarter-namespace", NAMESPACE), ("jumpstarter-name", EXPORTER_NAME)),
     grpc.StatusCode.OK),
], ids=["no-identity", "no-name", "wrong-kind", "unknown-exporter", "complete"])
def test_controller_requires_the_exporter_metadata(controller, tls, event_loop_portal, metadata, code):
    """Register needs a bearer token and jumpstarter-kind/-namespace/-name naming a known exporter."""
    async def register():
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(tls.cert_pem), grpc.access_token_call_credentials(EXPORTER_TOKEN))
        async with grpc.aio.secure_channel(controller.endpoint, credentials) as channel:
            stub = jumpstarter_pb2_grpc.ControllerServiceStub(channel)
            try:
                with fail_after(TIMEOUT):
                    await stub.Register(jumpstarter_pb2.RegisterRequest(), metadata=metadata)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

    assert event_loop_portal.call(register) == code
    registered = controller.read(lambda c: c.exporters[(NAMESPACE, EXPORTER_NAME)].registered)
    assert registered == (code == grpc.StatusCode.OK)


def _open(router_process, tls, token, portal):
    """A raw RouterService.Stream call with ``token``, on the session loop."""
    async def open_call():
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(tls.cert_pem), grpc.access_token_call_credentials(token))
        channel = grpc.aio.secure_channel(router_process.endpoint, credentials)
        return channel, router_pb2_grpc.RouterServiceStub(channel).Stream()
    return portal.call(open_call)


async def ended_with(call) -> tuple:
    """How ``call`` ends from its next read: ``(code, details)`` of an error status, or
    ``("read", message)`` if a message (or EOF, the end with OK) came instead. No exception: this
    runs on the session's event loop, where pytest's outcome exceptions would stop it."""
    try:
        message = await call.read()
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details()
    return "read", message


@pytest.mark.parametrize("token_kind", ["wrong-key", "expired", "wrong-audience", "wrong-issuer", "not-a-jwt"])
def test_router_rejects_bad_tokens(router_process, tls, event_loop_portal, token_kind):
    token = {
        "wrong-key": lambda: tokens.mint(b"another key"),
        "expired": lambda: tokens.mint(router_process.key, exp=1),
        "wrong-audience": lambda: tokens.mint(router_process.key, aud=["https://example.com"]),
        "wrong-issuer": lambda: tokens.mint(router_process.key, iss="https://example.com"),
        "not-a-jwt": lambda: "opaque",
    }[token_kind]()
    channel, call = _open(router_process, tls, token, event_loop_portal)

    async def outcome():
        try:
            with fail_after(TIMEOUT):
                return await ended_with(call)
        finally:
            await channel.close()

    assert event_loop_portal.call(outcome) == (grpc.StatusCode.UNAUTHENTICATED, "invalid jwt token")
    router_process.wait_for_line(r"^rejected ", timeout=TIMEOUT)


def test_router_pairs_by_sub_and_cancel_ends_the_peer(router_process, tls, event_loop_portal):
    """Two calls with the same sub exchange frames both ways (frame types kept); cancelling the
    waiting one ends the forwarding one with CANCELLED (as the Go router's errgroup does; the
    other way round the waiting call would end with OK); a call with another sub is not paired
    with them."""
    sub = "pair-1"
    # Which call waits is the one that arrives first: open them one after the other.
    a_channel, a = _open(router_process, tls, tokens.mint(router_process.key, sub), event_loop_portal)
    router_process.wait_for_line(rf"stream sub={sub} .* waiting", timeout=TIMEOUT)
    other_channel, other = _open(router_process, tls, tokens.mint(router_process.key, "pair-2"), event_loop_portal)
    router_process.wait_for_line(r"stream sub=pair-2 .* waiting", timeout=TIMEOUT)
    b_channel, b = _open(router_process, tls, tokens.mint(router_process.key, sub), event_loop_portal)
    router_process.wait_for_line(rf"stream sub={sub} .* forwarding", timeout=TIMEOUT)

    async def exchange():
        with fail_after(TIMEOUT):
            await a.write(router_pb2.StreamRequest(payload=b"from a"))
            await b.write(router_pb2.StreamRequest(payload=b"from b"))
            await b.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_PING))
            got_b = await b.read()
            got_a = [await a.read(), await a.read()]
            a.cancel()
            return got_a, got_b, await ended_with(b)  # the peer went away

    try:
        got_a, got_b, b_code = event_loop_portal.call(exchange)
    finally:
        for channel in (a_channel, b_channel, other_channel):
            event_loop_portal.call(channel.close)
    assert got_b.payload == b"from a"
    assert [m.payload for m in got_a] == [b"from b", b""]
    assert got_a[1].frame_type == router_pb2.FRAME_TYPE_PING
    assert b_code[0] == grpc.StatusCode.CANCELLED, b_code
    router_process.wait_for_line(rf"stream sub={sub} end status=", timeout=TIMEOUT, count=2)
    assert router_process.paired() == [sub]
