"""A real jumpstarter exporter Session behind jmp-bridge, driven by a real jumpstarter client.

    client_from_path(client.sock)                      jumpstarter DriverClient (gRPC, HTTP/2)
      └─ client.sock: each connection → connect_router_stream   (as jumpstarter's Lease does)
           └─ TLS gRPC RouterService.Stream ──▶ jmp-bridge ──▶ exporter.sock
                                                               └─ Session.serve_port_async
                                                                  (ExporterService + drivers)

The drivers are the real ones from the jumpstarter-driver-* packages: MockPower (driver calls
and a streaming call), EchoNetwork and UnixNetwork (byte streams), TcpNetwork (a call with a
result), under a Composite root.
"""

from __future__ import annotations

import hashlib
import random
import re
from contextlib import ExitStack, asynccontextmanager

import pytest
from anyio import EndOfStream, fail_after
from jumpstarter.client import client_from_path
from jumpstarter.common import ExporterStatus, TemporaryUnixListener
from jumpstarter.common.streams import connect_router_stream
from jumpstarter.config.tls import TLSConfigV1Alpha1
from jumpstarter.exporter import Session
from jumpstarter_driver_composite.driver import Composite
from jumpstarter_driver_network.driver import EchoNetwork, TcpNetwork, UnixNetwork
from jumpstarter_driver_power.common import PowerReading
from jumpstarter_driver_power.driver import MockPower

from conftest import digest_after_eof
from deployment.fixtures import echo_transfer

TOKEN = "interop-router-token"
TIMEOUT = 60


@asynccontextmanager
async def exporter_behind_bridge(root, session_path, client_path, bridge, tls, portal, stack):
    """Serves ``root`` in a Session on ``session_path`` (the bridge's route target) and yields a
    jumpstarter client whose every connection goes through the bridge."""
    tls_config = TLSConfigV1Alpha1(ca=tls.ca_base64)

    async def handle(stream):
        # What jumpstarter's Lease.handle_async does once Dial returned the router endpoint/token.
        async with connect_router_stream(bridge.endpoint, TOKEN, stream, tls_config, {}):
            pass

    with Session(root_device=root) as session:
        async with session.serve_port_async(f"unix://{session_path}"):
            # No controller or lease here: the session is ready for driver calls at once.
            session.update_status(ExporterStatus.LEASE_READY)
            async with TemporaryUnixListener(handle, path=client_path) as path:
                # SAFETY: the drivers are constructed locally, so their clients are trusted.
                async with client_from_path(path, portal, stack, allow=[], unsafe=True) as client:
                    yield client


class Exporter:
    """The client (``client.children[...]`` are the driver clients) and the bridge. The session,
    the client and the router-stream forwarding run in the test session's event loop, whose
    BlockingPortal the synchronous driver clients call into."""

    def __init__(self, root, session_path, client_path, bridge, tls, portal, digest_server):
        self.bridge = bridge
        self.portal = portal
        self.digest_server = digest_server
        self._stack = ExitStack()
        try:
            client_stack = self._stack.enter_context(ExitStack())
            context = exporter_behind_bridge(root, session_path, client_path, bridge, tls, portal, client_stack)
            self.client = self._stack.enter_context(portal.wrap_async_context_manager(context))
        except BaseException:
            self._stack.close()
            raise

    def close(self):
        """Closes the client (its connection, so its routed stream) and the session."""
        self._stack.close()


@pytest.fixture
def exporter(start_bridge, unix_server, sockdir, tls, event_loop_portal):
    session_path = sockdir / "exporter.sock"
    digest_server = unix_server("digest.sock", digest_after_eof)
    bridge = start_bridge({"session": session_path})
    root = Composite(
        children={
            "power": MockPower(),
            "echo": EchoNetwork(),
            "digest": UnixNetwork(path=str(digest_server.path)),
            "tcp": TcpNetwork(host="192.0.2.1", port=5201),
        }
    )
    exporter = Exporter(root, session_path, sockdir / "client.sock", bridge, tls, event_loop_portal, digest_server)
    try:
        yield exporter
    finally:
        exporter.close()


def test_driver_calls(exporter):
    """Unary driver calls through the bridge, including one whose result is checked."""
    power = exporter.client.children["power"]
    assert power.on() is None
    assert power.off() is None
    assert exporter.client.children["tcp"].address() == "tcp://192.0.2.1:5201"


def _close_and_get_stream_line(exporter) -> str:
    exporter.client.children["power"].on()
    exporter.close()
    lines = exporter.bridge.stream_lines(count=1)
    assert len(lines) == 1, lines
    return lines[0]


def test_client_connection_is_one_routed_stream(exporter):
    """The client's whole gRPC connection travels as one routed stream to the exporter's socket,
    and closing the client ends that stream (and closes the exporter-side connection)."""
    line = _close_and_get_stream_line(exporter)
    assert "route=session" in line, line
    to_target = int(re.search(r"bytes-to-target=(\d+)", line).group(1))
    from_target = int(re.search(r"bytes-from-target=(\d+)", line).group(1))
    assert to_target > 0 and from_target > 0, line


def test_client_close_is_not_logged_as_a_failure(exporter):
    line = _close_and_get_stream_line(exporter)
    assert re.search(r"\bstatus=(OK|CANCELLED)\b", line), line


def test_driver_streaming_call(exporter):
    """A server-streaming driver call (MockPower.read) through the bridge."""
    readings = list(exporter.client.children["power"].read())
    assert readings == [PowerReading(voltage=0.0, current=0.0), PowerReading(voltage=5.0, current=2.0)]


def test_driver_byte_stream(exporter):
    """A driver byte stream (EchoNetwork.connect): a router stream inside the tunnelled connection."""
    with exporter.client.children["echo"].stream() as stream:
        for message in (b"hello", b"through", b"jmp-bridge"):
            stream.send(message)
            assert stream.receive() == message


def test_bulk_transfer_through_echo_driver(exporter):
    """8 MiB through the EchoNetwork driver, both directions at once, verified by SHA-256."""
    data = random.Random(4).randbytes(8 * 1024 * 1024)
    echo = exporter.client.children["echo"]

    async def transfer():
        with fail_after(TIMEOUT):
            return await echo_transfer(echo, data)

    count, digest = exporter.portal.call(transfer)
    assert count == len(data)
    assert digest == hashlib.sha256(data).hexdigest()


def test_bulk_transfer_to_unix_target_with_half_close(exporter):
    """16 MiB up to a Unix-socket service via the UnixNetwork driver, then EOF; the service's
    reply (length and SHA-256 of what it read, sent only after EOF) comes back."""
    data = random.Random(5).randbytes(16 * 1024 * 1024)
    digest_driver = exporter.client.children["digest"]

    async def transfer():
        with fail_after(TIMEOUT):
            async with digest_driver.stream_async("connect") as stream:
                for offset in range(0, len(data), 65536):
                    await stream.send(data[offset:offset + 65536])
                await stream.send_eof()
                reply = bytearray()
                while True:
                    try:
                        reply += await stream.receive()
                    except EndOfStream:
                        return bytes(reply)

    reply = exporter.portal.call(transfer)
    assert reply == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode()
    assert len(exporter.digest_server.connections) == 1
