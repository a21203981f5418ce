"""jmp-bridge as a systemd service: socket activation, sd_notify, watchdog, reload, drain and the
file-descriptor store.

Socket activation is tested with Debian's real ``systemd-socket-activate``. What needs a service
manager (notifications, watchdog, the descriptor store across a restart) is tested against
``service_manager.ServiceManager``, a stand-in that speaks the real protocol (NOTIFY_SOCKET
datagrams with SCM_RIGHTS, LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, WATCHDOG_USEC), since systemd
itself cannot run here as PID 1.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import time
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from anyio import fail_after, to_thread
from jumpstarter.config.tls import TLSConfigV1Alpha1
from jumpstarter.streams.router import RouterStream
from jumpstarter_protocol import router_pb2_grpc

from conftest import DAY, Bridge, _bridges_key, echo, make_certificate, tls_listener_config, upper_echo
from deployment.fixtures import gateway_config
from service_manager import ServiceManager, listening_unix_socket
from test_gateway import free_port, probe_outcome
from test_router_stream import connect_router_stream_echo, receive_all, receive_exactly

TIMEOUT = 30


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def manager(sockdir):
    manager = ServiceManager(sockdir)
    yield manager
    manager.close()


@pytest.fixture
def launch(request, manager, sockdir):
    """``launch(config_text, sockets, watchdog_usec=None) -> Bridge`` started by the stand-in
    manager with ``sockets`` ([(socket, name)]) and the stored descriptors passed."""
    bridges: list[Bridge] = []
    request.node.stash[_bridges_key] = bridges

    def start(config: str, sockets, *, watchdog_usec: int | None = None) -> Bridge:
        path = sockdir / f"bridge-{len(bridges)}.yaml"
        path.write_text(config)
        options = manager.launch_options([(s.fileno(), name) for s, name in sockets], watchdog_usec=watchdog_usec)
        # A short grace: grpc keeps the connections of closed channels open without answering
        # the drain's PING, so a stop waits out the grace.
        bridge = Bridge(["--config", str(path), "--grace", "3"], cwd=sockdir, **options)
        bridge.config_path = path
        bridges.append(bridge)
        return bridge

    yield start
    for bridge in bridges:
        if bridge.proc.poll() is None:
            bridge.stop(signal.SIGKILL)


async def wait_for(manager, key, value=None, **options):
    """ServiceManager.wait_for without blocking the event loop the streams run on."""
    return await to_thread.run_sync(lambda: manager.wait_for(key, value, **options))


@asynccontextmanager
async def unix_stream(path: Path, route: str | None = None):
    """A jumpstarter RouterStream over a plain (no TLS) gRPC channel to a Unix socket."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"unix:{path}", options=options) as channel:
        call = router_pb2_grpc.RouterServiceStub(channel).Stream(
            metadata=(("jmp-route", route),) if route is not None else ()
        )
        async with RouterStream(context=call) as stream:
            yield stream


async def receive_until(stream, marker: bytes) -> bytes:
    data = bytearray()
    while marker not in data:
        data += await stream.receive()
    return bytes(data)


async def round_trip(stream, message: bytes, expected: bytes | None = None):
    await stream.send(message)
    assert await receive_exactly(stream, len(message)) == (expected if expected is not None else message)


def config(listeners: list[str], routes: dict[str, str]) -> str:
    lines = ["listen:"] + [f"  - {listener}" for listener in listeners] + ["routes:"]
    lines += [f"  {name}: {target}" for name, target in routes.items()]
    return "\n".join(lines) + "\n"


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_from_tty(fd: int, marker: bytes, timeout: float = 10.0) -> bytes:
    """Reads the (non-blocking) tty descriptor until ``marker`` arrives."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while marker not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {marker!r} on the tty; got {bytes(data)!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data += os.read(fd, 4096)
    return bytes(data)


# --------------------------------------------------------------------------------------------
# socket activation with Debian's systemd-socket-activate


async def test_systemd_socket_activate_unix_and_tcp(sockdir, unix_server, tls, request):
    """systemd-socket-activate passes a named Unix socket and a named TCP socket; a stock
    jumpstarter client (connect_router_stream, TLS) is served on the TCP one and a RouterStream on
    the Unix one, both by the one activated bridge."""
    target = unix_server("echo.sock", echo)
    grpc_path = sockdir / "grpc.sock"
    port = free_tcp_port()
    path = sockdir / "bridge.yaml"
    path.write_text(
        config(
            ["address: systemd:grpc", f"{{address: 'systemd:grpc-tls', allow-unauthenticated: true, tls: {{cert: {tls.cert}, key: {tls.key}}}}}"],
            {"echo": f"{{unix: {target.path}}}"},
        )
    )
    launcher = [
        "systemd-socket-activate", "-l", str(grpc_path), "-l", f"127.0.0.1:{port}", "--fdname=grpc:grpc-tls",
    ]
    bridge = Bridge(["--config", str(path)], cwd=sockdir, launcher=launcher)
    request.node.stash[_bridges_key] = [bridge]
    try:
        bridge.wait_for_line(rf"Listening on 127\.0\.0\.1:{port}")
        message = b"through an activated socket\n"
        with fail_after(TIMEOUT):
            # The first connection makes systemd-socket-activate exec the bridge.
            await connect_router_stream_echo(
                f"127.0.0.1:{port}", "token", TLSConfigV1Alpha1(ca=tls.ca_base64), message
            )
            async with unix_stream(grpc_path) as stream:
                await round_trip(stream, b"and through the unix one\n")
        listening = bridge.wait_for_line(r"\blistening\b", count=2)
        # Each passed socket is logged with its own address and the listener it serves.
        assert any(f"address=unix:{grpc_path} configured=systemd:grpc" in line for line in listening), listening
        assert any(f"address=tcp:127.0.0.1:{port} configured=systemd:grpc-tls" in line for line in listening), listening
    finally:
        assert await to_thread.run_sync(bridge.stop) == 0


def test_the_status_line_names_a_certificate_about_to_expire(launch, manager, sockdir):
    """`systemctl status` shows STATUS=: with a listener certificate that expires in 3 days, it
    ends by saying so (the log's warning: test_certificates.py)."""
    cert, key = sockdir / "tls.crt", sockdir / "tls.key"
    make_certificate(cert, key, days=3)
    launch(tls_listener_config(cert, key, sockdir / "echo.sock"), [])
    _, ready = manager.wait_for("READY", "1")
    assert re.search(r"routes: echo; TLS certificate of tcp:127\.0\.0\.1:0 expires in [23] days$",
                     ready["STATUS"]), ready["STATUS"]


def test_the_status_line_names_ca_files_about_to_expire(launch, manager, sockdir, tls):
    """A listener's ``client-ca`` expires in 3 days and the gateway's ``ca`` (which its routers
    use too) in 5: STATUS= names each file once (the log's warnings: test_certificates.py)."""
    client_ca, gateway_ca = sockdir / "client-ca.pem", sockdir / "cluster-ca.pem"
    make_certificate(client_ca, sockdir / "client-ca.key", days=3)
    make_certificate(gateway_ca, sockdir / "cluster-ca.key", days=5)
    launch(
        "listen:\n"
        f"  - {{address: 'tcp:127.0.0.1:0', allow-unauthenticated: true, "
        f"tls: {{cert: {tls.cert}, key: {tls.key}, client-ca: {client_ca}}}}}\n"
        f"routes:\n  echo: {{unix: {sockdir / 'echo.sock'}}}\n"
        "gateway:\n"
        f"  listen: 'unix:{sockdir / 'gateway.sock'}'\n"
        f"  controller: {{endpoint: '127.0.0.1:1', ca: {gateway_ca}}}\n",
        [],
    )
    _, ready = manager.wait_for("READY", "1")
    assert re.search(rf"routes: echo; CA certificate in {re.escape(str(client_ca))} expires in [23] days; "
                     rf"CA certificate in {re.escape(str(gateway_ca))} expires in [45] days$",
                     ready["STATUS"]), ready["STATUS"]


def test_the_status_line_names_an_upstream_certificate_about_to_expire(launch, manager, dated_controller, tls,
                                                                      event_loop_portal):
    """The gateway's controller presents a certificate that expires in 3 days: once a call has
    seen it, STATUS= ends by naming the controller (its log and status: test_certificates.py).
    The certificate is its own CA, the gateway's ``ca`` file, so the file is named from the
    start."""
    now = int(time.time())
    endpoint, cert = dated_controller(now - DAY, now + 3 * DAY + 3600)
    port = free_port()
    bridge = launch(gateway_config(endpoint, tls, ca=cert, listen=f"tcp:127.0.0.1:{port}"), [])
    _, ready = manager.wait_for("READY", "1")
    assert ready["STATUS"].endswith(f"routes: none; CA certificate in {cert} expires in 3 days"), ready["STATUS"]
    bridge.gateway_endpoint = f"127.0.0.1:{port}"
    assert probe_outcome(event_loop_portal, bridge, tls) == ("answered", None)
    manager.wait_for("STATUS", predicate=lambda note: note["STATUS"].endswith(
        f"routes: none; CA certificate in {cert} expires in 3 days; "
        f"TLS certificate of controller {endpoint} expires in 3 days"))


def test_a_certificate_served_on_no_socket_is_not_warned_of(launch, manager, sockdir):
    """A `systemd:` listener with `tls:` serves passed Unix sockets plain: with only such a socket
    passed its certificate is served nowhere, so one that expires in 3 days is neither warned of
    in the log nor named in STATUS=."""
    cert, key = sockdir / "tls.crt", sockdir / "tls.key"
    make_certificate(cert, key, days=3)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    bridge = launch(
        config([f"{{address: 'systemd:grpc', tls: {{cert: {cert}, key: {key}}}}}"],
               {"echo": f"{{unix: {sockdir}/echo.sock}}"}),
        [(grpc_socket, "grpc")],
    )
    _, ready = manager.wait_for("READY", "1")
    assert ready["STATUS"].endswith("routes: echo"), ready["STATUS"]
    bridge.wait_for_line(r"\] ready$")  # logged after the start's certificate check
    assert "TLS certificate" not in bridge.log(), bridge.log()


def test_passed_socket_without_listener_is_a_startup_error(launch, manager, sockdir):
    """A socket the unit passes but the configuration does not name fails the start, naming it."""
    unused = listening_unix_socket(sockdir / "unused.sock")
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    bridge = launch(
        config(["address: systemd:grpc"], {"echo": f"{{unix: {sockdir}/echo.sock}}"}),
        [(grpc_socket, "grpc"), (unused, "extra")],
    )
    assert bridge.proc.wait(timeout=20) == 1
    bridge.wait_for_line(r"passed sockets the configuration does not use: 'extra' \(fd 4\)")
    _, note = manager.wait_for("STATUS")
    assert "extra" in note["STATUS"]


def test_missing_passed_socket_is_a_startup_error(launch, manager, sockdir):
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    bridge = launch(
        config(["address: systemd:control-plane"], {"echo": f"{{unix: {sockdir}/echo.sock}}"}),
        [(grpc_socket, "grpc")],
    )
    assert bridge.proc.wait(timeout=20) == 1
    bridge.wait_for_line(r"no socket named 'control-plane' \(passed: grpc\)")


# --------------------------------------------------------------------------------------------
# sd_notify


async def test_ready_status_and_watchdog(launch, manager, sockdir, unix_server):
    """READY=1 comes once the listener is up (a stream works at once), with a STATUS naming the
    routes; WATCHDOG=1 arrives at about half of WATCHDOG_USEC, never later than WATCHDOG_USEC; the
    status line follows the open streams."""
    target = unix_server("echo.sock", echo)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    watchdog_usec = 1_000_000
    launch(
        config(["address: systemd:grpc"], {"echo": f"{{unix: {target.path}}}"}),
        [(grpc_socket, "grpc")],
        watchdog_usec=watchdog_usec,
    )
    with fail_after(TIMEOUT):
        ready_index, ready = await wait_for(manager, "READY", "1")
        assert "routes: echo" in ready["STATUS"]
        assert re.search(r"\b0 streams open", ready["STATUS"]), ready["STATUS"]
        async with unix_stream(sockdir / "grpc.sock") as stream:
            await round_trip(stream, b"ready means ready\n")
            await wait_for(manager, "STATUS", after=ready_index,
                           predicate=lambda note: re.search(r"\b1 stream open", note["STATUS"]) is not None)
        after = ready_index
        pings = []
        while len(pings) < 5:
            after, note = await wait_for(manager, "WATCHDOG", "1", after=after)
            pings.append(note.at)
            after += 1
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < watchdog_usec / 1e6, f"a watchdog ping came too late: {gaps}"
    assert 0.3 < sum(gaps) / len(gaps) < 0.8, f"pings should come every ~0.5 s: {gaps}"


async def test_sigterm_sends_stopping_and_drains_open_streams(launch, manager, sockdir, unix_server):
    """SIGTERM: STOPPING=1 at once, the open stream keeps working until it ends, then exit 0."""
    target = unix_server("echo.sock", echo)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    bridge = launch(config(["address: systemd:grpc"], {"echo": f"{{unix: {target.path}}}"}), [(grpc_socket, "grpc")])
    with fail_after(TIMEOUT):
        await wait_for(manager, "READY", "1")
        async with unix_stream(sockdir / "grpc.sock") as stream:
            await round_trip(stream, b"before SIGTERM\n")
            bridge.proc.send_signal(signal.SIGTERM)
            _, stopping = await wait_for(manager, "STOPPING", "1")
            assert "draining 1 open stream" in stopping["STATUS"]
            await round_trip(stream, b"still served while draining\n")
            assert bridge.proc.poll() is None, "the bridge exited with a stream open"
            await stream.send_eof()
            assert await receive_all(stream) == b""
    assert await to_thread.run_sync(bridge.stop) == 0
    bridge.wait_for_line(r"\bstopped\b")


# --------------------------------------------------------------------------------------------
# SIGHUP


async def test_sighup_reload_keeps_streams_and_rejects_a_bad_file(launch, manager, sockdir, unix_server):
    """SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1; a route added by the new file works,
    a stream on an unchanged route survives; a broken file keeps the running configuration and
    says why in STATUS= and the log."""
    echo_target = unix_server("echo.sock", echo)
    upper_target = unix_server("upper.sock", upper_echo)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    listeners = ["address: systemd:grpc"]
    bridge = launch(config(listeners, {"echo": f"{{unix: {echo_target.path}}}"}), [(grpc_socket, "grpc")])
    with fail_after(TIMEOUT):
        await wait_for(manager, "READY", "1")
        async with unix_stream(sockdir / "grpc.sock", "echo") as kept:
            await round_trip(kept, b"before the reload\n")

            bridge.config_path.write_text(
                config(listeners, {"echo": f"{{unix: {echo_target.path}}}", "upper": f"{{unix: {upper_target.path}}}"})
            )
            mark = manager.count()
            bridge.proc.send_signal(signal.SIGHUP)
            reloading_index, reloading = await wait_for(manager, "RELOADING", "1", after=mark)
            assert abs(int(reloading["MONOTONIC_USEC"]) - time.monotonic() * 1e6) < 30e6
            _, ready = await wait_for(manager, "READY", "1", after=reloading_index)
            assert "added upper" in ready["STATUS"]

            await round_trip(kept, b"after the reload\n")
            async with unix_stream(sockdir / "grpc.sock", "upper") as added:
                await round_trip(added, b"new route\n", b"NEW ROUTE\n")

            bridge.config_path.write_text("routes:\n  echo: {unix: relative/path.sock}\n")
            mark = manager.count()
            bridge.proc.send_signal(signal.SIGHUP)
            reloading_index, _ = await wait_for(manager, "RELOADING", "1", after=mark)
            _, ready = await wait_for(manager, "READY", "1", after=reloading_index)
            assert "reload failed" in ready["STATUS"]
            assert f"{bridge.config_path}:2" in ready["STATUS"]
            await to_thread.run_sync(lambda: bridge.wait_for_line(r"reload failed"))

            await round_trip(kept, b"after the failed reload\n")
            async with unix_stream(sockdir / "grpc.sock", "upper") as still:
                await round_trip(still, b"old configuration\n", b"OLD CONFIGURATION\n")


# --------------------------------------------------------------------------------------------
# the file-descriptor store


async def test_console_survives_a_restart_through_the_fd_store(launch, manager, sockdir):
    """The pty master goes to the store (FDSTORE=1, FDNAME=pty.console); after SIGTERM and a new
    start with the stored descriptor passed back, the link points at the same pty, the process
    holding the slave never saw a hang-up, and what it wrote while no bridge ran arrives."""
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    link = sockdir / "console"
    text = config(["address: systemd:grpc"], {"console": f"{{pty: {{link: {link}}}}}"})
    first = launch(text, [(grpc_socket, "grpc")])
    with fail_after(TIMEOUT):
        await wait_for(manager, "READY", "1")
    assert len(manager.store.get("pty.console", [])) == 1, manager.store
    slave = os.readlink(link)
    exporter = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        with fail_after(TIMEOUT):
            async with unix_stream(sockdir / "grpc.sock", "console") as stream:
                os.write(exporter, b"before the restart\n")
                assert b"before the restart\n" in await receive_until(stream, b"restart\n")
        assert await to_thread.run_sync(first.stop) == 0
        assert os.readlink(link) == slave, "the link must survive the restart"

        # No bridge runs: the exporter's writes are taken and kept by the pty, no hang-up.
        assert os.write(exporter, b"written while no bridge ran\n") == len(b"written while no bridge ran\n")
        poller = select.poll()
        poller.register(exporter, select.POLLHUP | select.POLLERR)
        assert poller.poll(0) == [], "the exporter's side of the pty saw a hang-up"

        mark = manager.count()
        second = launch(text, [(grpc_socket, "grpc")])
        with fail_after(TIMEOUT):
            await wait_for(manager, "READY", "1", after=mark)
            await to_thread.run_sync(lambda: second.wait_for_line(r"console taken back from the service manager"))
            assert os.readlink(link) == slave
            async with unix_stream(sockdir / "grpc.sock", "console") as stream:
                received = await receive_until(stream, b"no bridge ran\n")
                assert b"written while no bridge ran\n" in received
                await stream.send(b"typed after the restart\n")
                assert b"typed after the restart\n" in await to_thread.run_sync(
                    lambda: read_from_tty(exporter, b"restart\n")
                )
        assert poller.poll(0) == []
        assert await to_thread.run_sync(second.stop) == 0
    finally:
        os.close(exporter)


# --------------------------------------------------------------------------------------------
# exit-idle-time and the journal


async def test_exit_idle_time_exits_once_no_client_is_connected(launch, manager, sockdir, unix_server):
    """With exit-idle-time the bridge stays while a client is connected, even with no stream in
    flight, and exits 0 that long after the last one left (systemd starts it again on the next
    connection)."""
    target = unix_server("echo.sock", echo)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    bridge = launch(
        config(["address: systemd:grpc"], {"echo": f"{{unix: {target.path}}}"}) + "exit-idle-time: 1s\n",
        [(grpc_socket, "grpc")],
    )
    with fail_after(TIMEOUT):
        await wait_for(manager, "READY", "1")
        # The client is a plain connection: grpc keeps its connections open after a channel
        # is closed, until the process exits.
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(sockdir / "grpc.sock"))
        await wait_for(manager, "STATUS", predicate=lambda note: "on 1 connection " in note["STATUS"])
        await to_thread.run_sync(time.sleep, 2.0)  # twice the idle time, with a client connected
        assert bridge.proc.poll() is None, "exited while a client was connected"
        client.close()
    _, note = await wait_for(manager, "STOPPING", "1", timeout=TIMEOUT)
    assert "idle" in note["STATUS"]
    bridge.wait_for_line(r"exiting: no client connected")
    assert await to_thread.run_sync(lambda: bridge.proc.wait(timeout=20)) == 0


def test_logs_carry_journal_priorities_when_stderr_is_the_journal(manager, sockdir, request):
    """JOURNAL_STREAM naming the very stderr: lines start with the sd-daemon priority (<6> info,
    <3> error) instead of a timestamp, which the journal adds itself; a failed start too."""
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    bridges: list[Bridge] = []
    request.node.stash[_bridges_key] = bridges

    def start(routes: dict[str, str]) -> Bridge:
        path = sockdir / f"bridge-{len(bridges)}.yaml"
        path.write_text(config(["address: systemd:grpc"], routes))
        options = manager.launch_options([(grpc_socket.fileno(), "grpc")])
        inner = options["preexec_fn"]

        def in_child():
            inner()
            status = os.fstat(2)
            os.environ["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"

        bridge = Bridge(["--config", str(path)], cwd=sockdir, **(options | {"preexec_fn": in_child}))
        bridges.append(bridge)
        return bridge

    good = start({"echo": f"{{unix: {sockdir}/echo.sock}}"})
    good.wait_for_line(r"^<6>ready\b")
    assert good.stop() == 0
    lines = good.lines()
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), lines

    bad = start({"console": f"{{pty: {{link: {sockdir}/no/such/dir/console}}}}"})
    assert bad.proc.wait(timeout=20) == 1
    bad.wait_for_line(r"^<3>.*cannot create symlink")


def test_socket_activated_local_door(launch, manager, sockdir, unix_server):
    """A route's door can be a passed socket too (local: systemd:NAME)."""
    target = unix_server("echo.sock", echo)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    door_socket = listening_unix_socket(sockdir / "door.sock")
    launch(
        config(["address: systemd:grpc"], {"echo": f"{{unix: {target.path}, local: 'systemd:echo-door'}}"}),
        [(grpc_socket, "grpc"), (door_socket, "echo-door")],
    )
    manager.wait_for("READY", "1")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(TIMEOUT)
        client.connect(str(sockdir / "door.sock"))
        client.sendall(b"through a passed door\n")
        client.shutdown(socket.SHUT_WR)
        received = b""
        while data := client.recv(4096):
            received += data
    assert received == b"through a passed door\n"


def door_round_trip(path: Path, message: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(TIMEOUT)
        client.connect(str(path))
        client.sendall(message)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while data := client.recv(4096):
            received += data
    return received


def test_sighup_serves_a_changed_routes_passed_door_again(launch, manager, sockdir, unix_server):
    """A reload that changes a route whose door is a passed socket serves the door again from
    that socket: the service manager keeps listening on it, so a door left unserved would hold
    every client in the backlog."""
    target = unix_server("echo.sock", echo)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    door_socket = listening_unix_socket(sockdir / "door.sock")

    def routes(timeout: str) -> dict[str, str]:
        return {"echo": f"{{unix: {target.path}, local: 'systemd:echo-door', connect-timeout: {timeout}}}"}

    bridge = launch(config(["address: systemd:grpc"], routes("5s")), [(grpc_socket, "grpc"), (door_socket, "echo-door")])
    manager.wait_for("READY", "1")
    assert door_round_trip(sockdir / "door.sock", b"before the reload\n") == b"before the reload\n"

    bridge.config_path.write_text(config(["address: systemd:grpc"], routes("7s")))
    mark = manager.count()
    bridge.proc.send_signal(signal.SIGHUP)
    index, _ = manager.wait_for("RELOADING", "1", after=mark)
    _, ready = manager.wait_for("READY", "1", after=index)
    assert "reloaded (changed echo)" in ready["STATUS"], ready["STATUS"]
    assert door_round_trip(sockdir / "door.sock", b"after the reload\n") == b"after the reload\n"


async def test_sighup_adds_and_removes_consoles(launch, manager, sockdir):
    """A console route removed by a reload ends its attachments, removes its link and leaves
    the fd store; one added gets a pty, a link and a stored master at once."""
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    old_link, new_link = sockdir / "old-console", sockdir / "new-console"
    listeners = ["address: systemd:grpc"]
    bridge = launch(config(listeners, {"old": f"{{pty: {{link: {old_link}}}}}"}), [(grpc_socket, "grpc")])
    with fail_after(TIMEOUT):
        await wait_for(manager, "READY", "1")
        assert set(manager.store) == {"pty.old"}
        async with unix_stream(sockdir / "grpc.sock", "old") as attached:
            # Attached for sure before the reload: a byte from the device has come through.
            old_device = os.open(old_link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                os.write(old_device, b"attached\n")
                assert b"attached\n" in await receive_until(attached, b"attached\n")
            finally:
                os.close(old_device)
            bridge.config_path.write_text(config(listeners, {"new": f"{{pty: {{link: {new_link}}}}}"}))
            mark = manager.count()
            bridge.proc.send_signal(signal.SIGHUP)
            index, _ = await wait_for(manager, "RELOADING", "1", after=mark)
            _, ready = await wait_for(manager, "READY", "1", after=index)
            assert "added new" in ready["STATUS"] and "removed old" in ready["STATUS"], ready["STATUS"]
            with pytest.raises(Exception):  # the console went away with its route
                while True:
                    await attached.receive()
        assert not old_link.exists()
        assert set(manager.store) == {"pty.new"}
        exporter = os.open(new_link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            async with unix_stream(sockdir / "grpc.sock", "new") as stream:
                os.write(exporter, b"from the new console\n")
                assert b"from the new console\n" in await receive_until(stream, b"console\n")
        finally:
            os.close(exporter)


def test_sighup_reloads_the_tls_certificate(start_bridge, unix_server, tls, sockdir):
    """Renewed certificate files: after SIGHUP new connections get the new certificate."""
    import ssl

    cert, key = sockdir / "tls.crt", sockdir / "tls.key"
    cert.write_bytes(tls.cert.read_bytes())
    key.write_bytes(tls.key.read_bytes())
    target = unix_server("echo.sock", echo)
    bridge = start_bridge(config=tls_listener_config(cert, key, target.path))

    def served_certificate() -> bytes:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw) as conn:
                return conn.getpeercert(binary_form=True)

    before = served_certificate()
    make_certificate(cert, key, days=30)  # a new key: another certificate
    bridge.proc.send_signal(signal.SIGHUP)
    bridge.wait_for_line(r"TLS certificates reloaded")
    after = served_certificate()
    assert after != before
    assert ssl.DER_cert_to_PEM_cert(after).strip() == cert.read_text().strip()


def test_socket_activated_control_socket(launch, manager, sockdir):
    """control: systemd:NAME serves the control socket on a passed socket; status answers."""
    import subprocess

    from conftest import BRIDGE_BINARY

    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    control_socket = listening_unix_socket(sockdir / "control.sock")
    launch(
        config(["address: systemd:grpc"], {"console": f"{{pty: {{link: {sockdir}/console}}}}"})
        + "control: systemd:control\n",
        [(grpc_socket, "grpc"), (control_socket, "control")],
    )
    manager.wait_for("READY", "1")
    result = subprocess.run(
        [str(BRIDGE_BINARY), "status", "--control", str(sockdir / "control.sock")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^route=console type=pty .*state=up", result.stdout, re.M), result.stdout


async def test_serial_device_survives_a_restart_through_the_fd_store(launch, manager, sockdir):
    """A serial route's device goes to the store (serial.ROUTE) each time it is opened; a
    restarted bridge takes it back instead of opening the device again, so what the board sent
    while no bridge ran arrives, and typing reaches the board. The fake board is a real pty."""
    board, device = os.openpty()
    device_path = os.ttyname(device)
    os.set_blocking(board, False)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    text = config(["address: systemd:grpc"], {"uart": f"{{serial: {{device: {device_path}, baud: 115200}}}}"})
    try:
        first = launch(text, [(grpc_socket, "grpc")])
        with fail_after(TIMEOUT):
            await wait_for(manager, "READY", "1")
        assert len(manager.store.get("serial.uart", [])) == 1, manager.store
        with fail_after(TIMEOUT):
            async with unix_stream(sockdir / "grpc.sock", "uart") as stream:
                os.write(board, b"booting\n")
                assert b"booting\n" in await receive_until(stream, b"booting\n")
        assert await to_thread.run_sync(first.stop) == 0

        os.write(board, b"printed while no bridge ran\n")
        mark = manager.count()
        second = launch(text, [(grpc_socket, "grpc")])
        with fail_after(TIMEOUT):
            await wait_for(manager, "READY", "1", after=mark)
            await to_thread.run_sync(
                lambda: second.wait_for_line(r"serial device taken back from the service manager")
            )
            async with unix_stream(sockdir / "grpc.sock", "uart") as stream:
                assert b"printed while no bridge ran\n" in await receive_until(stream, b"no bridge ran\n")
                await stream.send(b"typed after the restart\n")
                assert b"typed after the restart\n" in await to_thread.run_sync(
                    lambda: read_from_tty(board, b"restart\n")
                )
        assert await to_thread.run_sync(second.stop) == 0
    finally:
        os.close(board)
        os.close(device)


async def test_serial_link_survives_a_restart_through_the_fd_store(launch, manager, sockdir):
    """A serial route's pty link goes to the store (serial-link.ROUTE) next to its device: across
    a restart the link points at the same pty, the program holding it (an exporter's PySerial
    driver) never sees a hang-up, and the board's output and the program's typing flow again
    through the new bridge."""
    board, device = os.openpty()
    device_path = os.ttyname(device)
    os.set_blocking(board, False)
    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    link = sockdir / "uart-link"
    text = config(["address: systemd:grpc"], {"uart": f"{{serial: {{device: {device_path}, link: {link}}}}}"})
    program = None
    try:
        first = launch(text, [(grpc_socket, "grpc")])
        with fail_after(TIMEOUT):
            await wait_for(manager, "READY", "1")
        assert len(manager.store.get("serial.uart", [])) == 1, manager.store
        assert len(manager.store.get("serial-link.uart", [])) == 1, manager.store
        slave = os.readlink(link)
        program = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        os.write(board, b"booting\n")
        assert b"booting\n" in await to_thread.run_sync(lambda: read_from_tty(program, b"booting\n"))
        assert await to_thread.run_sync(first.stop) == 0
        assert os.readlink(link) == slave, "the link must survive the restart"
        poller = select.poll()
        poller.register(program, select.POLLHUP | select.POLLERR)
        assert poller.poll(0) == [], "the program on the link saw a hang-up"

        mark = manager.count()
        second = launch(text, [(grpc_socket, "grpc")])
        with fail_after(TIMEOUT):
            await wait_for(manager, "READY", "1", after=mark)
            await to_thread.run_sync(lambda: second.wait_for_line(r"serial link taken back from the service manager"))
        assert os.readlink(link) == slave
        os.write(board, b"after the restart\n")
        assert b"after the restart\n" in await to_thread.run_sync(lambda: read_from_tty(program, b"restart\n"))
        os.write(program, b"typed on the link\n")
        assert b"typed on the link\n" in await to_thread.run_sync(lambda: read_from_tty(board, b"link\n"))
        assert poller.poll(0) == []
        assert len(manager.store.get("serial-link.uart", [])) == 1, manager.store
        assert await to_thread.run_sync(second.stop) == 0
    finally:
        if program is not None:
            os.close(program)
        os.close(board)
        os.close(device)


def test_metrics_endpoint_on_a_passed_socket(launch, manager, sockdir):
    """``metrics: systemd:NAME`` serves the metrics on the TCP socket the unit passed (a
    ``ListenStream=127.0.0.1:9464`` with ``FileDescriptorName=metrics``)."""
    from test_metrics import samples, scrape, value

    grpc_socket = listening_unix_socket(sockdir / "grpc.sock")
    metrics_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    metrics_socket.bind(("127.0.0.1", 0))
    metrics_socket.listen(16)
    port = metrics_socket.getsockname()[1]
    text = config(["address: systemd:grpc"], {"echo": f"{{unix: {sockdir}/echo.sock}}"})
    bridge = launch(text + "metrics: systemd:metrics\n", [(grpc_socket, "grpc"), (metrics_socket, "metrics")])
    manager.wait_for("READY")
    bridge.wait_for_line(rf"address=tcp:127\.0\.0\.1:{port} \[JMPBridgeCore\] metrics endpoint bound")
    status, _, body = scrape(f"tcp:127.0.0.1:{port}")
    assert status == 200
    assert value(samples(body.decode()), "jmp_bridge_streams_active", route="echo") == 0
