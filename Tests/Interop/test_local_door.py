"""Local doors: a route's raw Unix socket, relayed to the route's target with splice(2).

The client is a plain Unix socket (what socat or a local tool uses); the targets are the small
services of conftest. Every transfer is checked with SHA-256, both half-closes are exercised,
and the read/write fallback (``splice: false``) is checked the same way.
"""

from __future__ import annotations

import hashlib
import os
import resource
import select
import socket
import threading

import pytest

from conftest import CHUNK, digest_after_eof, echo, sha256_hex

TIMEOUT = 30
SIZE = 64 * 1024 * 1024


def door_config(tls, sockdir, target, *, splice: bool | None = None) -> str:
    door = f"{{address: 'unix:{sockdir}/door.sock'"
    if splice is not None:
        door += f", splice: {'true' if splice else 'false'}"
    door += ", mode: '0600'}"
    return (
        "listen:\n"
        f"  - {{address: 'tcp:127.0.0.1:0', allow-unauthenticated: true, tls: {{cert: {tls.cert}, key: {tls.key}}}}}\n"
        "routes:\n"
        f"  echo: {{unix: {target}, local: {door}}}\n"
    )


def connect(path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(TIMEOUT)
    client.connect(str(path))
    return client


def send_then_half_close(client: socket.socket, data: bytes) -> threading.Thread:
    def run():
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            client.sendall(view[start:start + CHUNK])
        client.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def receive_all(client: socket.socket) -> bytes:
    chunks = []
    while data := client.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "read-write"])
def test_bulk_echo_through_the_door_is_exact(start_bridge, unix_server, tls, sockdir, splice):
    """64 MiB both ways through the door, SHA-256 checked; the log says which path moved them."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge(config=door_config(tls, sockdir, target.path, splice=splice))
    bridge.wait_for_line(r"door open")
    assert oct(os.stat(sockdir / "door.sock").st_mode & 0o777) == "0o600"
    data = os.urandom(SIZE)
    with connect(sockdir / "door.sock") as client:
        writer = send_then_half_close(client, data)
        received = receive_all(client)
        writer.join(TIMEOUT)
    assert len(received) == len(data)
    assert sha256_hex(received) == sha256_hex(data)
    [line] = bridge.wait_for_line(r"door connection finished")
    assert f"bytes-to-target={SIZE}" in line and f"bytes-from-target={SIZE}" in line
    assert f"splice={'true' if splice else 'false'}" in line


def test_client_half_close_reaches_the_target_which_still_replies(start_bridge, unix_server, tls, sockdir):
    """The client's EOF arrives at the target as EOF while the way back stays open: the target's
    digest can only be sent after it."""
    target = unix_server("digest.sock", digest_after_eof)
    start_bridge(config=door_config(tls, sockdir, target.path))
    data = os.urandom(5 * 1024 * 1024 + 17)
    with connect(sockdir / "door.sock") as client:
        send_then_half_close(client, data).join(TIMEOUT)
        reply = receive_all(client)
    assert reply == f"{len(data)} {sha256_hex(data)}\n".encode()


def test_target_half_close_reaches_the_client_which_can_still_send(start_bridge, unix_server, tls, sockdir):
    """The target speaks first and half-closes; the client sees EOF, then sends its own data,
    which the target still receives in full."""
    received_by_target = {}
    done = threading.Event()
    greeting = os.urandom(3 * 1024 * 1024)

    def speak_then_listen(conn: socket.socket):
        conn.sendall(greeting)
        conn.shutdown(socket.SHUT_WR)
        digest, length = hashlib.sha256(), 0
        while data := conn.recv(CHUNK):
            digest.update(data)
            length += len(data)
        received_by_target["digest"] = (length, digest.hexdigest())
        conn.close()
        done.set()

    target = unix_server("speaker.sock", speak_then_listen)
    start_bridge(config=door_config(tls, sockdir, target.path))
    answer = os.urandom(2 * 1024 * 1024 + 5)
    with connect(sockdir / "door.sock") as client:
        assert receive_all(client) == greeting  # EOF came through
        client.sendall(answer)
        client.shutdown(socket.SHUT_WR)
        assert done.wait(TIMEOUT)
        assert client.recv(1) == b""
    assert received_by_target["digest"] == (len(answer), sha256_hex(answer))


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "read-write"])
def test_a_client_that_closes_ends_the_connection_to_a_silent_target(start_bridge, unix_server, tls, sockdir, splice):
    """A client that closes altogether (not a half-close) gets nothing more, so the door does not
    wait for a target that takes the EOF and then neither sends nor closes: the target's
    connection is closed once all the client sent has reached it."""
    state = {}
    done = threading.Event()

    def read_then_hold(conn: socket.socket):
        length = 0
        while data := conn.recv(CHUNK):
            length += len(data)
        state["received"] = length
        poller = select.poll()
        poller.register(conn, 0)  # only POLLHUP: the door closed its end
        state["hung-up"] = bool(poller.poll(TIMEOUT * 1000))
        conn.close()
        done.set()

    target = unix_server("silent.sock", read_then_hold)
    bridge = start_bridge(config=door_config(tls, sockdir, target.path, splice=splice))
    data = os.urandom(3 * 1024 * 1024 + 1)
    client = connect(sockdir / "door.sock")
    client.sendall(data)
    client.close()
    assert done.wait(TIMEOUT + 10)
    assert state == {"received": len(data), "hung-up": True}
    [line] = bridge.wait_for_line(r"door connection finished")
    assert f"bytes-to-target={len(data)}" in line and "closed-by=client" in line, line


def test_clients_queued_while_the_bridge_is_out_of_descriptors_are_served_once_it_has_them(
        start_bridge, unix_server, tls, sockdir):
    """accept(2) fails with EMFILE while the bridge has no descriptor to spare, and the
    connections stay queued. Epoll tells the door of a waiting connection once (edge-triggered),
    so the door tries again every 100 ms: once descriptors are free, the queued clients are
    served without waiting for yet another client to connect. The bridge's descriptor limit is
    lowered to 0 from outside (prlimit(2)) for the time two clients connect."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge(config=door_config(tls, sockdir, target.path))
    bridge.wait_for_line(r"door open")
    soft, hard = resource.prlimit(bridge.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(bridge.pid, resource.RLIMIT_NOFILE, (0, hard))
    try:
        clients = [connect(sockdir / "door.sock") for _ in range(2)]
        [line] = bridge.wait_for_line(r"door: cannot accept; trying again every 100 ms")
        assert "Too many open files" in line, line
    finally:
        resource.prlimit(bridge.pid, resource.RLIMIT_NOFILE, (soft, hard))
    for index, client in enumerate(clients):
        with client:
            message = f"queued client {index}\n".encode()
            client.sendall(message)
            client.shutdown(socket.SHUT_WR)
            assert receive_all(client) == message
    bridge.wait_for_line(r"door: accepting again")


def test_unreachable_target_closes_the_door_connection(start_bridge, tls, sockdir):
    """No target listening: the door connection is closed at once and the log says why; the
    door keeps serving."""
    bridge = start_bridge(config=door_config(tls, sockdir, sockdir / "missing.sock"))
    for _ in range(2):
        with connect(sockdir / "door.sock") as client:
            assert client.recv(1) == b""
    lines = bridge.wait_for_line(r"door connection refused: the target is unreachable", count=2)
    assert "No such file or directory" in lines[0]


def test_door_on_a_pty_route_is_refused_with_file_and_line(tmp_path):
    import subprocess

    from conftest import BRIDGE_BINARY

    path = tmp_path / "bridge.yaml"
    path.write_text(
        "listen: [unix:/tmp/x.sock]\nroutes:\n  console:\n    pty: {link: /tmp/console}\n    local: unix:/tmp/d.sock\n"
    )
    result = subprocess.run([str(BRIDGE_BINARY), "check", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{path}:5: routes.console.local: local doors are available on unix: routes only" in result.stderr


def test_door_connection_limit_refuses_the_extra_connection_and_status_counts(start_bridge, unix_server, tls, sockdir):
    """``max-connections: 2``: a third connection while two are relayed is closed at once and
    logged; the two go on with every byte; ``status`` counts active, total and refused
    connections; once one ends, a new one is relayed again."""
    target = unix_server("echo.sock", echo)
    config = door_config(tls, sockdir, target.path).replace("mode: '0600'}", "mode: '0600', max-connections: 2}")
    bridge = start_bridge(config=config)
    bridge.wait_for_line(r"door open")
    door = sockdir / "door.sock"

    def route_line() -> dict[str, str]:
        [line] = [item for item in bridge.status() if item.get("route") == "echo"]
        return line

    first, second = connect(door), connect(door)
    for client in (first, second):  # relayed: an echo comes back
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
    with connect(door) as third:
        assert third.recv(1) == b"", "the connection over max-connections was not closed"
    [refused] = bridge.wait_for_line(r"door connection refused: max-connections reached")
    assert "max-connections=2" in refused and "route=echo" in refused
    line = route_line()
    assert line["door"] == f"unix:{door}"
    assert (line["door-connections"], line["door-total"], line["door-refused"]) == ("2", "2", "1")

    # The two relayed connections were not disturbed; once one ends, there is room again.
    second.sendall(b"still here")
    assert second.recv(10) == b"still here"
    first.shutdown(socket.SHUT_WR)
    assert receive_all(first) == b""
    first.close()
    bridge.wait_for_line(r"door connection finished")
    with connect(door) as fourth:
        fourth.sendall(b"room again")
        assert fourth.recv(10) == b"room again"
    second.close()
    line = route_line()
    assert (line["door-total"], line["door-refused"]) == ("3", "1")
