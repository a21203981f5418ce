"""Fixtures for the interop tests: jmp-bridge against the real jumpstarter 0.9.0 packages.

* ``tls`` makes a throwaway self-signed certificate for 127.0.0.1/localhost (openssl CLI).
* ``start_bridge`` runs ``jmp-bridge serve`` as a subprocess on ``tcp:127.0.0.1:0`` with TLS and
  a control socket, waits for its ``ready`` log line, learns the bound ports from
  ``jmp-bridge status`` (never from the log), and always stops it with SIGTERM and checks that it
  exits 0. Its log is attached to the report of a failing test.
* ``unix_server`` runs small threaded Unix-socket services (echo, digest, ...) as route targets.
* ``asyncio_echo`` runs an asyncio echo service with a chosen listen backlog in its own process.
* ``sockdir`` is a short directory under /tmp for sockets (sun_path is limited to 108 bytes).

The binary is ``$JMP_BRIDGE`` (``scripts/test`` sets it), else ``.build/debug/jmp-bridge``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import inspect
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from deployment.process import Process

REPO = Path(__file__).resolve().parents[2]
BRIDGE_BINARY = Path(os.environ.get("JMP_BRIDGE") or REPO / ".build" / "debug" / "jmp-bridge").absolute()

#: How long to wait for the bridge to start, a log line to appear, or the bridge to exit.
STARTUP_TIMEOUT = 20.0
EXIT_TIMEOUT = 20.0

_bridges_key = pytest.StashKey[list]()
_processes_key = pytest.StashKey[list]()


def attach_log(request, process) -> None:
    """Attaches ``process.log()`` (titled with ``process.name`` and ``process.pid``) to the
    report of the requesting test if it fails (used by the deployment fixtures)."""
    request.node.stash.setdefault(_processes_key, []).append(process)


# --------------------------------------------------------------------------------------------
# pytest plumbing


@pytest.fixture(scope="session", autouse=True)
def event_loop_portal():
    """One asyncio event loop, in its own thread, for every grpc.aio object of the session.

    grpc.aio delivers completions through one process-wide poller that remembers each call's
    event loop; a completion arriving after its loop was closed (a fresh loop per test, as
    pytest's async plugins make) raises "Event loop is closed" inside whichever loop is running.
    One loop for the session avoids that. Async tests run on it (see pytest_pyfunc_call), and
    the exporter tests' jumpstarter clients use it as their BlockingPortal.
    """
    with start_blocking_portal(backend="asyncio") as portal:
        yield portal


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    portal = pyfuncitem.funcargs["event_loop_portal"]
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    call_in_portal(portal, functools.partial(pyfuncitem.obj, **kwargs))
    return True


def call_in_portal(portal, func, *args):
    """``portal.call(func, *args)``, except that a ``BaseException`` that is not a cancellation
    (pytest's outcomes: ``pytest.fail``, a ``pytest.raises`` that saw nothing, ``pytest.skip``) is
    raised here, in the test's thread: raised inside the portal it would stop the session's event
    loop and fail every test after this one."""
    async def shielded():
        try:
            return None, await func(*args)
        except Exception:
            raise
        except BaseException as outcome:  # noqa: BLE001 - handed to the test's thread
            if isinstance(outcome, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            return outcome, None

    outcome, result = portal.call(shielded)
    if outcome is not None:
        raise outcome
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for bridge in item.stash.get(_bridges_key, []):
            report.sections.append((f"jmp-bridge log (pid {bridge.pid}, {report.when})", bridge.log()))
        for process in item.stash.get(_processes_key, []):
            report.sections.append((f"{process.name} log (pid {process.pid}, {report.when})", process.log()))
    return report


# --------------------------------------------------------------------------------------------
# temporary files


@pytest.fixture
def sockdir():
    """A short directory for Unix sockets (pytest's tmp_path can exceed sun_path's limit)."""
    path = Path(tempfile.mkdtemp(prefix="jbt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def ca_base64(self) -> str:
        """The certificate as jumpstarter's ``TLSConfigV1Alpha1(ca=...)`` wants it."""
        return base64.b64encode(self.cert_pem).decode()


def make_certificate(cert, key, days: int) -> int:
    """A self-signed certificate for localhost valid for ``days`` from now; returns its notAfter
    in seconds since the epoch, as openssl reads it back."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", str(days), "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return not_after(cert)


def not_after(cert) -> int:
    """The certificate's notAfter in seconds since the epoch, as openssl reads it."""
    end = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-enddate"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return int(ssl.cert_time_to_seconds(end.removeprefix("notAfter=")))


DAY = 86_400


def make_dated_certificate(cert, key, not_before: int, not_after: int, *, signed_by=None) -> None:
    """A certificate for IP 127.0.0.1 and DNS localhost valid from ``not_before`` to ``not_after``
    (seconds since the epoch, whole): one that has expired, or is not valid yet, which ``openssl
    req`` cannot make. Self-signed (and a CA), or signed by ``signed_by``, a ``(cert, key)`` pair of
    files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost" if signed_by else "test CA")])
    issuer, signer = name, private
    if signed_by is not None:
        issuer = x509.load_pem_x509_certificate(Path(signed_by[0]).read_bytes()).subject
        signer = serialization.load_pem_private_key(Path(signed_by[1]).read_bytes(), password=None)
    moment = lambda seconds: datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)  # noqa: E731
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment(not_before)).not_valid_after(moment(not_after))
        .add_extension(x509.BasicConstraints(ca=signed_by is None, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    Path(cert).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    Path(key).write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))


def iso(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``, as ``status`` writes a certificate's expiry."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@pytest.fixture
def dated_controller(event_loop_portal, sockdir):
    """``start(not_before, not_after, signed_by=None)`` starts the test controller
    (deployment/controller.py; its probe service answers) with a certificate valid from
    ``not_before`` to ``not_after`` (see :func:`make_dated_certificate`) and returns ``(endpoint,
    certificate file)``; ``start.restart(endpoint)`` stops that controller and starts it again on
    the same port with the same certificate. Each is stopped after the test."""
    from deployment.controller import Controller

    started: dict[str, tuple] = {}

    def start(not_before: int, not_after: int, *, signed_by=None) -> tuple[str, str]:
        cert, key = sockdir / f"controller{len(started)}.crt", sockdir / f"controller{len(started)}.key"
        make_dated_certificate(cert, key, not_before, not_after, signed_by=signed_by)
        controller = Controller(router_endpoint="127.0.0.1:1", router_key=b"unused")
        port = event_loop_portal.call(controller.start, cert.read_bytes(), key.read_bytes())
        endpoint = f"127.0.0.1:{port}"
        started[endpoint] = (controller, cert, key)
        return endpoint, cert

    def restart(endpoint: str) -> None:
        controller, cert, key = started[endpoint]
        event_loop_portal.call(controller.stop)
        event_loop_portal.call(controller.start, cert.read_bytes(), key.read_bytes(), endpoint)

    start.restart = restart
    yield start
    for controller, _, _ in started.values():
        event_loop_portal.call(controller.stop)


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> TLSFiles:
    """A throwaway self-signed certificate valid for IP 127.0.0.1 and DNS localhost, for 30 days
    (outside the bridge's expiry warning)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "tls.crt", directory / "tls.key"
    make_certificate(cert, key, days=30)
    return TLSFiles(cert=cert, key=key)


# --------------------------------------------------------------------------------------------
# the bridge process


def tls_listener_config(cert, key, echo_path) -> str:
    """A configuration with one TLS listener on ``tcp:127.0.0.1:0`` serving ``cert`` and ``key``
    (no authentication) and the route ``echo`` to ``echo_path``; more keys may follow."""
    return (
        "listen:\n"
        f"  - {{address: 'tcp:127.0.0.1:0', allow-unauthenticated: true, tls: {{cert: {cert}, key: {key}}}}}\n"
        f"routes:\n  echo: {{unix: {echo_path}}}\n"
    )


def parse_status_line(line: str) -> dict[str, str]:
    """One line of the ``status`` reply: ``key=value key="value with spaces"`` (backslash escapes)."""
    items: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))', line):
        items[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
    return items


class Bridge(Process):
    """A running ``jmp-bridge serve``; its combined stdout/stderr is collected line by line."""

    def __init__(self, args: list[str], cwd: Path, *, launcher: list[str] = (), control: Path | None = None,
                 **popen_options):
        """``launcher`` goes before the bridge's command line (e.g. systemd-socket-activate);
        ``control`` is the path of the bridge's control socket (its ``--control`` or ``control:``),
        for :meth:`status` and :meth:`wait_ready`; ``popen_options`` (pass_fds, preexec_fn, env) go
        to :class:`subprocess.Popen`."""
        if not os.access(BRIDGE_BINARY, os.X_OK):
            pytest.fail(f"jmp-bridge binary not found at {BRIDGE_BINARY} (run `swift build` or set JMP_BRIDGE)")
        self.control = control
        super().__init__("jmp-bridge", [*launcher, str(BRIDGE_BINARY), "serve", *args], cwd=cwd, **popen_options)
        self.ports: list[int] = []
        self.port: int | None = None
        self.gateway_endpoint: str | None = None

    def wait_for_line(self, pattern: str, *, timeout: float = STARTUP_TIMEOUT, count: int = 1) -> list[str]:
        """Waits until ``count`` log lines match the regular expression ``pattern``; returns them."""
        return super().wait_for_line(pattern, timeout=timeout, count=count)

    def stream_lines(self, *, count: int, timeout: float = 15.0) -> list[str]:
        """The per-stream end lines (``status=...``), once ``count`` of them were logged."""
        return self.wait_for_line(r"\bstatus=\S+", count=count, timeout=timeout)

    # -- lifecycle

    def status(self) -> list[dict[str, str]]:
        """``jmp-bridge status`` through the control socket, one dict per line (``key=value`` items)."""
        assert self.control is not None, "this bridge was started without a control socket"
        result = subprocess.run([str(BRIDGE_BINARY), "status", "--control", str(self.control)],
                                capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
        assert result.returncode == 0, f"jmp-bridge status failed: {result.stderr}\n{self.log()}"
        return [parse_status_line(line) for line in result.stdout.splitlines()]

    def wait_ready(self):
        """Waits for readiness, then takes the bound TCP ports from ``status`` (``listener=``
        lines, and the exporter gateway's ``gateway=`` line: :attr:`gateway_endpoint`)."""
        self.wait_for_line(r"\] ready$")
        reply = self.status()
        assert reply[0].get("state") == "ready", reply
        self.ports = [int(item["listener"].rsplit(":", 1)[1]) for item in reply
                      if item.get("listener", "").startswith("tcp:127.0.0.1:")]
        gateways = [item["gateway"] for item in reply if item.get("gateway", "").startswith("tcp:127.0.0.1:")]
        self.gateway_endpoint = gateways[0].removeprefix("tcp:") if gateways else None
        assert self.ports or gateways, f"no tcp listener in jmp-bridge status: {reply}\n{self.log()}"
        assert 0 not in self.ports, reply
        assert not (self.gateway_endpoint or "").endswith(":0"), reply
        self.port = self.ports[0] if self.ports else None

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, as jumpstarter's router_endpoint."""
        return f"127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM) -> int:
        """Signals the bridge (SIGTERM by default) and returns its exit status."""
        return super().stop(sig, timeout=EXIT_TIMEOUT)


@pytest.fixture
def start_bridge(request, tls, sockdir):
    """``start_bridge(routes={name: path}, default_route=None, config=None, extra_args=())``.

    Starts jmp-bridge with TLS on tcp:127.0.0.1:0 (or with ``config``, a YAML text written to a
    file and passed as --config; then the listeners come from it) and waits until it is ready.
    Every bridge is stopped with SIGTERM at teardown and must exit 0.
    """
    bridges: list[Bridge] = []
    request.node.stash[_bridges_key] = bridges

    def start(routes: dict[str, str | Path] | None = None, *, default_route: str | None = None,
              config: str | None = None, extra_args=()) -> Bridge:
        args: list[str] = []
        if config is not None:
            path = sockdir / f"bridge-{len(bridges)}.yaml"
            path.write_text(config)
            args += ["--config", str(path)]
        else:
            args += ["--listen", "tcp:127.0.0.1:0", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
                     "--allow-unauthenticated"]
        for name, target in (routes or {}).items():
            args += ["--route", f"{name}=unix:{target}"]
        if default_route is not None:
            args += ["--default-route", default_route]
        args += list(extra_args)
        # Every bridge has a control socket for `status`: the test's own, or one added here.
        configured = re.search(r"^control:\s*(?:unix:)?(\S+)", config or "", re.M)
        if "--control" in args:
            control = Path(args[args.index("--control") + 1].removeprefix("unix:"))
        elif configured and not configured.group(1).startswith("systemd:"):
            control = Path(configured.group(1))
        else:
            control = sockdir / f"control-{len(bridges)}.sock"
            args += ["--control", str(control)]
        bridge = Bridge(args, cwd=sockdir, control=control)
        bridges.append(bridge)
        bridge.wait_ready()
        return bridge

    yield start

    problems = []
    for bridge in bridges:
        status = bridge.stop()
        if status != 0:
            problems.append(f"jmp-bridge (pid {bridge.pid}) exited with status {status} after SIGTERM")
    if problems:
        pytest.fail("\n".join(problems))


# --------------------------------------------------------------------------------------------
# Unix-socket services used as route targets


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.connections.append(self.request)  # type: ignore[attr-defined]
        self.server.behaviour(self.request)  # type: ignore[attr-defined]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256


class UnixServer:
    """A threaded Unix-socket server; ``behaviour(conn)`` runs in its own thread per connection."""

    def __init__(self, path: Path, behaviour):
        self.path = path
        self.server = _Server(str(path), _Handler)
        self.server.behaviour = behaviour
        self.server.connections = []
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def connections(self) -> list[socket.socket]:
        return self.server.connections

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self.server.connections):
            try:
                conn.close()
            except OSError:
                pass


@pytest.fixture
def unix_server(sockdir):
    """``unix_server(name, behaviour) -> UnixServer`` listening on ``sockdir/name``."""
    servers: list[UnixServer] = []

    def start(name: str, behaviour) -> UnixServer:
        server = UnixServer(sockdir / name, behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def asyncio_echo(sockdir):
    """``asyncio_echo(name, backlog, accept_delay_ms=0) -> Path``: an asyncio echo service
    (``asyncio_echo.py``) in its own process, listening on ``sockdir/name`` with that listen
    backlog and taking ``accept_delay_ms`` over each accept; killed at teardown."""
    processes: list[subprocess.Popen] = []

    def start(name: str, backlog: int, accept_delay_ms: float = 0) -> Path:
        path = sockdir / name
        script = Path(__file__).with_name("asyncio_echo.py")
        process = subprocess.Popen(
            [sys.executable, str(script), str(path), str(backlog), str(accept_delay_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", "the asyncio echo service did not start"
        return path

    yield start
    for process in processes:
        process.kill()
        process.wait()


# Behaviours -----------------------------------------------------------------------------------

CHUNK = 256 * 1024


def echo(conn: socket.socket):
    """Echoes until EOF, then half-closes its own side (so EOF travels back)."""
    while data := conn.recv(CHUNK):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    conn.close()


def upper_echo(conn: socket.socket):
    """Like :func:`echo`, upper-cased: proves which route a stream took."""
    while data := conn.recv(CHUNK):
        conn.sendall(data.upper())
    conn.shutdown(socket.SHUT_WR)
    conn.close()


def digest_after_eof(conn: socket.socket):
    """Reads until EOF, then replies ``<length> <sha256>\\n`` and closes: a reply that can only
    exist if the client's half-close arrived as EOF while the way back stayed open."""
    digest, length = hashlib.sha256(), 0
    while data := conn.recv(CHUNK):
        digest.update(data)
        length += len(data)
    conn.sendall(f"{length} {digest.hexdigest()}\n".encode())
    conn.close()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
