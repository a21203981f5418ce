"""Consoles with real peers: jumpstarter's PySerial driver on a ``pty`` route, and
``jmp-bridge attach``/``status`` through the control socket, driven in tmux.

    router stream (jmp-route: console) ──▶ jmp-bridge ── pty master ══ slave ◀── link ◀── PySerial driver
                                                                                     (exporter Session, client via the bridge too)
    tmux pane: jmp-bridge attach console ──▶ control socket ──▶ the same console
"""

from __future__ import annotations

import json
import os
import re
import select
import termios
import shutil
import signal
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
from anyio import fail_after, to_thread
from jumpstarter_driver_composite.driver import Composite
from jumpstarter_driver_pyserial.driver import PySerial

from conftest import BRIDGE_BINARY, REPO
from test_exporter_session import Exporter
from test_router_stream import receive_exactly, router_stream

TIMEOUT = 30


# --------------------------------------------------------------------------------------------
# PySerial driver on a pty route


@pytest.fixture
def serial_exporter(start_bridge, sockdir, tls, event_loop_portal):
    """A bridge with the exporter's session route and a console route; an exporter Session whose
    PySerial driver opens the console's link; a jumpstarter client reaching it via the bridge."""
    link = sockdir / "console"
    session_path = sockdir / "exporter.sock"
    bridge = start_bridge(
        {"session": session_path},
        default_route="session",
        extra_args=["--route", f"console=pty:{link}"],
    )
    root = Composite(children={"serial": PySerial(url=str(link))})
    exporter = Exporter(root, session_path, sockdir / "client.sock", bridge, tls, event_loop_portal, None)
    try:
        yield exporter
    finally:
        exporter.close()


def test_pyserial_driver_on_a_pty_route(serial_exporter, tls):
    """Bytes the PySerial driver writes reach a remote stream on the console route, and bytes the
    remote stream writes reach the driver's client."""
    serial = serial_exporter.client.children["serial"]
    bridge = serial_exporter.bridge

    async def exchange():
        with fail_after(TIMEOUT):
            async with serial.stream_async("connect") as port:
                async with router_stream(bridge, tls, "console") as (remote, _call):
                    # The driver has the port open once its stream exists; what it writes is
                    # console output, broadcast to the attached stream.
                    await port.send(b"U-Boot 2024.01 from the driver\r\n")
                    from_driver = await receive_exactly(remote, len(b"U-Boot 2024.01 from the driver\r\n"))
                    await remote.send(b"boot\r")
                    to_driver = bytearray()
                    while len(to_driver) < len(b"boot\r"):
                        to_driver += await port.receive()
                    return from_driver, bytes(to_driver)

    from_driver, to_driver = serial_exporter.portal.call(exchange)
    assert from_driver == b"U-Boot 2024.01 from the driver\r\n"
    assert to_driver == b"boot\r"


# --------------------------------------------------------------------------------------------
# A serial route on a fake serial device (a pty), with jumpstarter's RouterStream


@pytest.fixture
def fake_serial(sockdir):
    """A pty standing in for /dev/ttyUSB0: the bridge opens the slave through a symlink, the test
    is the board on the master."""
    master, slave = os.openpty()
    path = sockdir / "ttyFAKE0"
    path.symlink_to(os.ttyname(slave))
    os.close(slave)
    try:
        yield master, path
    finally:
        os.close(master)


async def test_serial_route_with_router_stream(start_bridge, tls, fake_serial, sockdir):
    """Bytes from the device reach a remote stream, the stream's bytes reach the device, the
    line settings are applied (921600 baud, HUPCL off), and a second bridge on the same device
    refuses to start, saying why."""
    master, path = fake_serial
    bridge = start_bridge(extra_args=["--route", f"uart=serial:{path},baud=921600"])
    attributes = termios.tcgetattr(master)  # the master reports the slave's settings
    assert attributes[4] == attributes[5] == termios.B921600
    assert attributes[2] & termios.HUPCL == 0

    with fail_after(TIMEOUT):
        async with router_stream(bridge, tls, "uart") as (remote, _call):
            os.write(master, b"U-Boot SPL\r\n")
            assert await receive_exactly(remote, len(b"U-Boot SPL\r\n")) == b"U-Boot SPL\r\n"
            await remote.send(b"printenv\r")
            assert read_until(master, b"printenv\r") == b"printenv\r"

    second = subprocess.run(
        [str(BRIDGE_BINARY), "serve", "--listen", f"unix:{sockdir}/second.sock", "--route", f"uart=serial:{path}"],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 1, second.stderr
    assert f"route 'uart': {path} is in use" in second.stderr, second.stderr


# --------------------------------------------------------------------------------------------
# PySerial driver on a serial route's pty link: the bridge holds the UART, the exporter's driver
# opens the link


class Board:
    """The board on a fake UART's master: a thread prints numbered lines until :meth:`stop`, and
    :meth:`received` is everything that arrived at the board (what was typed into the UART)."""

    def __init__(self, master: int):
        self.master = master
        self.written = bytearray()
        self._received = bytearray()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._print, name="board", daemon=True)

    def say(self, line: bytes):
        """Prints one line now (before :meth:`start`)."""
        os.write(self.master, line)
        self.written += line

    def start(self):
        self._writer.start()

    def _print(self):
        number = 0
        # A board prints at its own pace; the wait paces the output, it awaits nothing.
        while not self._stop.wait(0.005):
            line = f"board line {number:06d}\r\n".encode()
            os.write(self.master, line)
            self.written += line
            number += 1

    def stop(self) -> bytes:
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(timeout=10)
            assert not self._writer.is_alive()
        return bytes(self.written)

    def read_until(self, expected: bytes) -> bytes:
        """Reads what was typed into the UART until it ends with ``expected``; all of it."""
        while not self._received.endswith(expected):
            ready, _, _ = select.select([self.master], [], [], 15)
            assert ready, f"timed out waiting for {expected!r} at the board; got {bytes(self._received)!r}"
            self._received += os.read(self.master, 4096)
        return bytes(self._received)

    def received(self) -> bytes:
        while select.select([self.master], [], [], 0)[0]:
            self._received += os.read(self.master, 4096)
        return bytes(self._received)


class Viewer:
    """``jmp-bridge attach ROUTE --read-only`` through pipes; its output is collected by a thread."""

    def __init__(self, route: str, control: Path):
        self.proc = subprocess.Popen(
            [str(BRIDGE_BINARY), "attach", route, "--read-only", "--control", str(control)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.output = bytearray()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="viewer", daemon=True)
        self._reader.start()

    def _read(self):
        while chunk := self.proc.stdout.read1(65536):
            with self._changed:
                self.output += chunk
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = 20.0):
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(bytes(self.output)) or self.proc.poll() is not None,
                                          timeout), f"the viewer did not get there: {bytes(self.output)[-300:]!r}"
            assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def close(self):
        self.proc.stdin.close()  # EOF detaches
        self.proc.wait(timeout=20)


def device_descriptors(pid: int, device: str) -> set[int]:
    """The descriptors of process ``pid`` that are ``device`` open."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == device:
                found.add(int(fd))
        except FileNotFoundError:
            pass
    return found


def route_status(bridge, name: str) -> dict[str, str]:
    [line] = [line for line in bridge.status() if line.get("route") == name]
    return line


def test_pyserial_driver_on_a_serial_link(start_bridge, fake_serial, sockdir, tls, event_loop_portal):
    """The stock exporter Session serves PySerial(url=LINK) on a bridge-held UART: a stock client
    reads the board's output through the driver and types into it (the board receives exactly
    that), disconnects and connects again while the board keeps printing, and a read-only viewer
    sees every byte throughout; the bridge's descriptor of the device stays open all along."""
    master, path = fake_serial
    device = os.readlink(path)
    link = sockdir / "uart-link"
    control = sockdir / "control.sock"
    session_path = sockdir / "exporter.sock"
    bridge = start_bridge(
        {"session": session_path},
        default_route="session",
        extra_args=["--route", f"uart=serial:{path},link={link}", "--control", str(control)],
    )
    bridge.wait_for_line(r"serial link ready")
    assert os.readlink(link).startswith("/dev/pts/") and os.readlink(link) != device
    held = device_descriptors(bridge.pid, device)  # NIO holds an input and an output copy
    assert held, f"the bridge does not hold {device}"
    line = route_status(bridge, "uart")
    assert line["link"] == str(link) and line["state"] == "up" and line["attachments"] == "1", line
    document = json.loads(subprocess.run([str(BRIDGE_BINARY), "status", "--json", "--control", str(control)],
                                         capture_output=True, text=True, timeout=20, check=True).stdout)
    jsonschema.validate(document, json.loads((REPO / "docs" / "status.schema.json").read_text()))
    [uart] = [route for route in document["routes"] if route["name"] == "uart"]
    assert uart["link"] == str(link) and uart["attachments"] == 1, uart
    # Nobody opened the link yet: nothing flushed, nothing typed.
    assert uart["link-flushes"] == 0 and uart["link-flushed-bytes"] == 0 and uart["link-input-waiting"] == 0, uart

    board = Board(master)
    board.say(b"U-Boot 2024.01\r\n")
    viewer = Viewer("uart", control)
    exporter = None
    try:
        viewer.wait_for(lambda output: output == b"U-Boot 2024.01\r\n")  # the scrollback: attached
        assert route_status(bridge, "uart")["attachments"] == "2"  # the viewer and the link
        board.start()
        root = Composite(children={"serial": PySerial(url=str(link))})
        exporter = Exporter(root, session_path, sockdir / "client.sock", bridge, tls, event_loop_portal, None)
        serial = exporter.client.children["serial"]

        async def session(typed: bytes, after: int) -> int:
            """One client connection to the driver: reads two whole board lines numbered above
            ``after``, types ``typed``; returns the last line number it read."""
            with fail_after(TIMEOUT):
                async with serial.stream_async("connect") as port:
                    received = b""
                    while len(numbers := [int(n) for n in re.findall(rb"board line (\d{6})\r\n", received)
                                          if int(n) > after]) < 2:
                        received += await port.receive()
                    await port.send(typed)
                    await to_thread.run_sync(lambda: board.read_until(typed))
                    return numbers[-1]

        first = exporter.portal.call(session, b"help\r", -1)
        assert route_status(bridge, "uart")["attachments"] == "2"  # the viewer and the link
        # The client is gone and the board goes on printing; the link stays.
        viewer.wait_for(lambda output: f"board line {first + 20:06d}".encode() in output)
        assert os.readlink(link).startswith("/dev/pts/")
        second = exporter.portal.call(session, b"printenv\r", first + 20)
        assert second > first + 20

        written = board.stop()
        viewer.wait_for(lambda output: len(output) >= len(written))
        assert bytes(viewer.output) == written, "the viewer must see every byte the board printed"
        assert board.received() == b"help\rprintenv\r", "the board must receive exactly what was typed"
        assert device_descriptors(bridge.pid, device) == held, "the device must stay open"
        assert not [l for l in bridge.lines() if re.search(r"serial device (lost|reopened)|device lost", l)]
        line = route_status(bridge, "uart")
        assert line["state"] == "up" and line["cuts"] == "0" and line["attachments"] == "2", line
        assert int(line["input-bytes"]) == len(b"help\rprintenv\r"), line
        # PySerial flushes its input each time it opens the port: the bridge saw it.
        assert int(line["link-flushes"]) >= 2, line
    finally:
        board.stop()
        if exporter is not None:
            exporter.close()
        viewer.close()


# --------------------------------------------------------------------------------------------
# jmp-bridge attach in tmux


class Tmux:
    """A private tmux server (its own socket) with one 120x40 window running bash."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.socket = directory / "tmux.sock"
        self.session = f"attach-{uuid.uuid4().hex[:8]}"
        self.run("new-session", "-d", "-s", self.session, "-x", "120", "-y", "40",
                 "env", "PS1=$ ", "TERM=screen", "bash", "--norc", "--noprofile")

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], check=True, capture_output=True,
                              text=True).stdout

    def send(self, *keys: str):
        self.run("send-keys", "-t", self.session, *keys)

    def type(self, text: str):
        self.run("send-keys", "-t", self.session, "-l", text)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-J", "-t", self.session, "-S", "-200")

    def wait_for(self, pattern: str, *, timeout: float = 15.0, after: int = 0) -> re.Match:
        """Polls the pane until ``pattern`` (a regular expression) shows up past ``after``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if match := regex.search(screen, after):
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r} in the tmux pane:\n{screen}")
            time.sleep(0.05)

    def shell_pid(self) -> int:
        return int(self.run("display-message", "-p", "-t", self.session, "#{pane_pid}").strip())

    def terminal_settings(self) -> str:
        """``stty -a`` of the pane's terminal, run by its shell (once it has its prompt back)."""
        out = self.directory / f"stty-{uuid.uuid4().hex[:6]}.txt"
        self.type(f"stty -a > {out}; echo stty-done")
        self.send("Enter")
        self.wait_for(r"\nstty-done")
        return out.read_text()

    def close(self):
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)


@pytest.fixture
def tmux(sockdir):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (scripts/setup installs it)")
    session = Tmux(sockdir)
    try:
        yield session
    finally:
        session.close()


@contextmanager
def console_program(link: Path):
    """The program on the console's far end (as agetty or QEMU would be): the pty slave."""
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        yield fd
    finally:
        os.close(fd)


def read_until(fd: int, expected: bytes, timeout: float = 15.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while expected not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {expected!r} on the console; got {data!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data += os.read(fd, 4096)
    return data


@pytest.fixture
def console_bridge(start_bridge, sockdir):
    """A bridge with a pty console route and a control socket."""
    link = sockdir / "console"
    control = sockdir / "control.sock"
    bridge = start_bridge(extra_args=["--route", f"console=pty:{link}", "--control", str(control)])
    bridge.wait_for_line(r"control socket bound")
    return bridge, link, control


def test_attach_in_tmux_shows_output_delivers_input_and_restores_the_terminal(console_bridge, tmux):
    bridge, link, control = console_bridge
    with console_program(link) as device:
        os.write(device, b"boot log line\r\n")
        tmux.type(f"{BRIDGE_BINARY} attach console --control {control}")
        tmux.send("Enter")
        tmux.wait_for(r"press Ctrl-B three times to leave")
        tmux.wait_for(r"boot log line")  # the scrollback

        os.write(device, b"login: ")
        tmux.wait_for(r"login: ")
        tmux.type("root")
        tmux.send("Enter")
        assert read_until(device, b"root\r").endswith(b"root\r")

        # Ctrl-B twice, then another key: both are passed on with the key.
        tmux.send("C-b", "C-b", "x")
        assert read_until(device, b"\x02\x02x").endswith(b"\x02\x02x")

        status = subprocess.run([str(BRIDGE_BINARY), "status", "--control", str(control)],
                                capture_output=True, text=True, timeout=20)
        assert status.returncode == 0, status.stderr
        [line] = [l for l in status.stdout.splitlines() if l.startswith("route=console ")]
        assert "state=up" in line and "attachments=1" in line, status.stdout

        tmux.send("C-b", "C-b", "C-b")
        tmux.wait_for(r"jmp-bridge: detached")
        settings = tmux.terminal_settings()
        assert re.search(r"(?<![-\w])icanon\b", settings), settings
        assert re.search(r"(?<![-\w])echo\b", settings), settings
        # The three Ctrl-B that left never reached the console.
        leftover = os.read(device, 4096) if select.select([device], [], [], 0.3)[0] else b""
        assert b"\x02" not in leftover, leftover


def test_attach_restores_the_terminal_on_sigterm(console_bridge, tmux):
    bridge, link, control = console_bridge
    tmux.type(f"{BRIDGE_BINARY} attach console --control {control}")
    tmux.send("Enter")
    tmux.wait_for(r"press Ctrl-B three times to leave")
    shell = tmux.shell_pid()
    children = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children
    os.kill(int(children[0]), signal.SIGTERM)
    tmux.wait_for(r"jmp-bridge: detached \(signal 15\)")
    settings = tmux.terminal_settings()
    assert re.search(r"(?<![-\w])icanon\b", settings), settings
    assert re.search(r"(?<![-\w])echo\b", settings), settings


def test_attach_through_a_pipe(console_bridge):
    """Without a terminal: stdin is passed as it is, EOF detaches, the output is the scrollback."""
    bridge, link, control = console_bridge
    with console_program(link) as device:
        os.write(device, b"$ ")
        result = subprocess.run([str(BRIDGE_BINARY), "attach", "console", "--control", str(control)],
                                input=b"uname\r", capture_output=True, timeout=20)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"$ "
        assert b"detached" in result.stderr
        assert read_until(device, b"uname\r").endswith(b"uname\r")


def test_attach_to_an_unknown_route_fails_clearly(console_bridge):
    bridge, link, control = console_bridge
    result = subprocess.run([str(BRIDGE_BINARY), "attach", "nosuch", "--control", str(control)],
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "unknown route 'nosuch'" in result.stderr
