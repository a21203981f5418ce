"""pytest fixtures for a Jumpstarter deployment made of real peers on this machine.

    stock client (in the test process) ──TLS──▶ controller (in the test process, grpc.aio)
        │                                          ▲  Register/Status/Listen/ReportStatus…
        │ Dial → router_endpoint + token           │
        ▼                                          │ endpoint: / tls.ca: of the exporter YAML
    router (subprocess, TLS) ◀────────────── stock exporter (subprocess: run_exporter.py YAML)

Import them into a test module with ``from deployment.fixtures import *`` (pytest picks up
fixtures imported into a module). They build on ``tls`` and ``event_loop_portal`` from
``conftest.py``; everything runs on the session's one event loop, as the other interop tests.

* ``router_process`` — ``router.py`` as a subprocess with the ``tls`` certificate and a fresh
  router key (:class:`RouterProcess`: ``endpoint``, ``key``, its log), plus the arguments of
  ``router_extra`` (none unless a test parametrizes it). Stopped with SIGTERM at teardown; must
  exit 0.
* ``controller`` — :class:`controller.Controller` serving on 127.0.0.1:0 with the ``tls``
  certificate, handing out ``router_process.endpoint`` and signing with its key; it knows one
  exporter (:data:`EXPORTER_NAME`, labels :data:`EXPORTER_LABELS`) and one client
  (:data:`CLIENT_NAME`) in :data:`NAMESPACE`. Wrapped as :class:`ControllerHandle` for
  synchronous tests (``wait_until``, ``read``).

The router's and the exporter's output is attached to the report of a failing test
(``conftest.attach_log``).
* ``deployment_path`` — ``direct`` or ``gateway`` (a parametrized fixture): every test that runs
  the exporter runs both ways.
* ``gateway`` — jmp-bridge serving only the exporter gateway (:func:`gateway_config`, plus the keys
  of ``gateway_extra``, none unless a test parametrizes it) in front of ``controller``; ``gateway_bridge`` is it on the ``gateway`` path, None on the direct one.
* ``exporter_endpoint`` — **the seam for a gateway**: the ``endpoint:`` and ``tls.ca:`` written
  to the exporter YAML: the controller's, or the gateway's on the ``gateway`` path (the one
  change an operator makes); nothing else changes.
* ``start_exporter(endpoint=None, name=EXPORTER_NAME)`` — writes the exporter YAML
  (:func:`exporter_yaml`: the drivers ``power`` = MockPower, ``echo`` = EchoNetwork, token
  :data:`EXPORTER_TOKEN`; another ``name`` must first be added to the controller) and runs
  the stock exporter on it (:class:`ExporterProcess`), waiting until the controller saw it
  register, open its Status stream and report AVAILABLE. At teardown it is sent SIGTERM and
  must exit with 143 (128+SIGTERM, as ``jmp run``) after unregistering.
* ``exporter`` — ``start_exporter()`` with ``exporter_endpoint``.
* ``client_config`` — a stock ``ClientConfigV1Alpha1`` for the controller (token
  :data:`CLIENT_TOKEN`, CA = the ``tls`` certificate, driver clients allowed).
* :func:`leased_client` — leases the exporter by selector through the stock client and
  yields ``(lease, client)``; leaving it releases the lease (``DeleteLease``).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import yaml
from jumpstarter.config.client import ClientConfigV1Alpha1, ClientConfigV1Alpha1Drivers
from jumpstarter.config.common import ObjectMeta
from jumpstarter.config.tls import TLSConfigV1Alpha1

from conftest import attach_log

from .controller import Controller, Status
from .process import Process
from .router_calls import CHUNK  # the size of each message sent (gRPC's default limit is 4 MiB)

__all__ = [
    "CLIENT_NAME", "CLIENT_TOKEN", "EXPORTER_LABELS", "EXPORTER_NAME", "EXPORTER_TOKEN", "NAMESPACE", "TIMEOUT",
    "CHUNK", "ControllerHandle", "Endpoint", "ExporterProcess", "RouterProcess", "echo_transfer", "exporter_yaml",
    "leased_client",
    "gateway_config",
    # fixtures
    "client_config", "controller", "deployment_path", "exporter", "exporter_endpoint", "gateway", "gateway_bridge",
    "gateway_extra",
    "router_extra", "router_process", "start_exporter",
]

HERE = Path(__file__).resolve().parent
NAMESPACE = "lab"
EXPORTER_NAME = "exporter-1"
EXPORTER_LABELS = {"board": "mock", "site": "interop"}
EXPORTER_TOKEN = "exporter-bearer-token"
CLIENT_NAME = "client-1"
CLIENT_TOKEN = "client-bearer-token"
#: Bound for every wait on a peer (start, registration, lease, exit).
TIMEOUT = 30.0


@dataclass(frozen=True)
class Endpoint:
    """Where a peer connects: ``host:port`` and the CA it trusts (base64 PEM, as ``tls.ca``)."""

    endpoint: str
    ca: str


class RouterProcess(Process):
    """``router.py`` as a subprocess; ``endpoint`` once it printed ``ready``."""

    def __init__(self, args: list[str], key: bytes):
        super().__init__("router", args)
        self.key = key
        self.endpoint = ""

    def wait_ready(self) -> None:
        self.endpoint = self.wait_for_line(r"^ready ", timeout=TIMEOUT)[0].split()[1]

    def paired(self) -> list[str]:
        """The stream ids that reached forwarding (both sides connected)."""
        return [m.group(1) for line in self.lines() if (m := re.match(r"stream sub=(\S+) .* forwarding$", line))]

    def forwarded(self) -> dict[str, tuple[int, int]]:
        """For each finished paired stream: payload bytes sent to its first and its second call."""
        pattern = r"stream sub=(\S+) end status=\S+ bytes-to-first=(\d+) bytes-to-second=(\d+)$"
        return {m.group(1): (int(m.group(2)), int(m.group(3)))
                for line in self.lines() if (m := re.match(pattern, line))}


class ExporterProcess(Process):
    """The stock exporter (``run_exporter.py``) on a YAML file; ``config`` is that file."""

    def __init__(self, config: Path):
        self.config = config
        super().__init__("exporter", [sys.executable, HERE / "run_exporter.py", config])


class ControllerHandle:
    """The in-process :class:`Controller` for synchronous code: its state is read and waited for
    on the event loop that serves it, through the session's BlockingPortal."""

    def __init__(self, controller: Controller, portal):
        self.controller = controller
        self.portal = portal

    @property
    def endpoint(self) -> str:
        return self.controller.endpoint

    def read(self, function):
        """``function(controller)`` evaluated on the controller's event loop."""
        return self.portal.call(function, self.controller)

    def wait_until(self, predicate, *, timeout: float = TIMEOUT, what: str = "condition"):
        """Waits (bounded) until ``predicate(controller)`` is truthy and returns its value."""
        return self.portal.call(self.controller.wait_until, predicate, timeout, what)

    def exporter(self):
        return self.read(lambda c: c.exporters[(NAMESPACE, EXPORTER_NAME)])


def exporter_yaml(endpoint: Endpoint, name: str = EXPORTER_NAME) -> str:
    """The exporter's config file, as an operator would write it for ``jmp run``."""
    return yaml.safe_dump({
        "apiVersion": "jumpstarter.dev/v1alpha1",
        "kind": "ExporterConfig",
        "metadata": {"namespace": NAMESPACE, "name": name},
        "endpoint": endpoint.endpoint,
        "tls": {"ca": endpoint.ca, "insecure": False},
        "token": EXPORTER_TOKEN,
        "export": {
            "power": {"type": "jumpstarter_driver_power.driver.MockPower"},
            "echo": {"type": "jumpstarter_driver_network.driver.EchoNetwork"},
        },
    }, sort_keys=False)


@pytest.fixture
def router_extra() -> list[str]:
    """More ``router.py`` arguments for ``router_process``: none; a test parametrizes
    ``router_extra`` to set some (``--max-connection-age``)."""
    return []


@pytest.fixture
def router_process(request, tls, tmp_path, router_extra):
    key = os.urandom(32).hex().encode()
    key_file = tmp_path / "router.key"
    key_file.write_bytes(key + b"\n")
    router = RouterProcess([sys.executable, HERE / "router.py", "--listen", "127.0.0.1:0",
                            "--tls-cert", tls.cert, "--tls-key", tls.key, "--key-file", key_file,
                            *router_extra], key)
    attach_log(request, router)
    try:
        router.wait_ready()
        yield router
    finally:
        status = router.stop()
    assert status == 0, f"router exited with {status}:\n{router.log()}"


@pytest.fixture
def controller(event_loop_portal, tls, router_process):
    async def start() -> Controller:
        controller = Controller(router_endpoint=router_process.endpoint, router_key=router_process.key)
        controller.add_exporter(NAMESPACE, EXPORTER_NAME, EXPORTER_LABELS)
        controller.add_client(NAMESPACE, CLIENT_NAME)
        await controller.start(tls.cert_pem, tls.key.read_bytes())
        return controller

    controller = event_loop_portal.call(start)
    try:
        yield ControllerHandle(controller, event_loop_portal)
    finally:
        event_loop_portal.call(controller.stop)


def gateway_config(controller_endpoint: str, tls, *, ca=None, listen: str = "tcp:127.0.0.1:0", **extra: str) -> str:
    """A jmp-bridge configuration with only the exporter gateway: TLS on ``listen`` with the
    ``tls`` certificate, the real controller at ``controller_endpoint`` trusted with the same
    certificate (which also signs the router's), or with the CA file ``ca``. ``extra`` adds
    ``gateway:`` keys verbatim."""
    lines = [
        "gateway:",
        f"  listen: {{address: '{listen}', tls: {{cert: '{tls.cert}', key: '{tls.key}'}}}}",
        f"  controller: {{endpoint: '{controller_endpoint}', ca: '{ca or tls.cert}'}}",
        *(f"  {key}: {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def gateway_extra() -> dict[str, str]:
    """More ``gateway:`` keys for the ``gateway`` fixture: none; a test parametrizes
    ``gateway_extra`` to set some (``idle-timeout``, …)."""
    return {}


@pytest.fixture
def gateway(start_bridge, controller, tls, gateway_extra):
    """jmp-bridge as the exporter gateway in front of ``controller`` (and, through the rewritten
    ``router_endpoint``, the router); ``gateway.gateway_endpoint`` is where exporters connect.
    Its metrics endpoint is on (``metrics=`` of the status' first line)."""
    bridge = start_bridge(config=gateway_config(controller.endpoint, tls, **gateway_extra),
                          extra_args=["--metrics", "tcp:127.0.0.1:0"])
    assert bridge.gateway_endpoint, bridge.status()
    return bridge


@pytest.fixture(params=["direct", "gateway"])
def deployment_path(request) -> str:
    """How the exporter reaches the controller and the router: ``direct``, or through the
    ``gateway``. Every test that uses the exporter runs both ways, so the harness is proven on
    its own and the gateway is tested with exactly the same assertions."""
    return request.param


@pytest.fixture
def gateway_bridge(deployment_path, request):
    """The gateway bridge on the ``gateway`` path; None on the ``direct`` one."""
    return request.getfixturevalue("gateway") if deployment_path == "gateway" else None


@pytest.fixture
def exporter_endpoint(controller, tls, gateway_bridge) -> Endpoint:
    """The exporter's ``endpoint:``/``tls.ca:``: the controller's, or the gateway's (the one
    change an operator makes to put jmp-bridge in the path)."""
    if gateway_bridge is not None:
        return Endpoint(gateway_bridge.gateway_endpoint, tls.ca_base64)
    return Endpoint(controller.endpoint, tls.ca_base64)


@pytest.fixture
def start_exporter(request, controller, exporter_endpoint, tmp_path):
    exporters: list[ExporterProcess] = []

    def start(endpoint: Endpoint | None = None, name: str = EXPORTER_NAME) -> ExporterProcess:
        path = tmp_path / f"exporter-{len(exporters)}.yaml"
        path.write_text(exporter_yaml(endpoint or exporter_endpoint, name))
        exporter = ExporterProcess(path)
        exporters.append(exporter)
        attach_log(request, exporter)
        try:
            controller.wait_until(
                lambda c: (e := c.exporters[(NAMESPACE, name)]).registered and e.online
                and e.status == Status.EXPORTER_STATUS_AVAILABLE,
                what="the exporter to register, open its Status stream and report AVAILABLE")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{exporter.log()}") from None
        return exporter

    yield start

    problems = []
    for exporter in exporters:
        status = exporter.stop(timeout=TIMEOUT)
        if status != 128 + signal.SIGTERM:
            problems.append(f"exporter exited with {status}, not 143, after SIGTERM:\n{exporter.log()}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def exporter(start_exporter) -> ExporterProcess:
    return start_exporter()


@pytest.fixture
def client_config(controller, tls) -> ClientConfigV1Alpha1:
    return ClientConfigV1Alpha1(
        alias="interop",
        metadata=ObjectMeta(namespace=NAMESPACE, name=CLIENT_NAME),
        endpoint=controller.endpoint,
        tls=TLSConfigV1Alpha1(ca=tls.ca_base64),
        token=CLIENT_TOKEN,
        # SAFETY: the driver clients come from the locally installed jumpstarter-driver-* packages.
        drivers=ClientConfigV1Alpha1Drivers(allow=[], unsafe=True),
    )




async def echo_transfer(echo, data: bytes) -> tuple[int, str]:
    """Sends ``data`` through an EchoNetwork stream while reading the echo; (count, sha256)."""
    digest, count = hashlib.sha256(), 0
    async with echo.stream_async("connect") as stream:
        async def send():
            for offset in range(0, len(data), CHUNK):
                await stream.send(data[offset:offset + CHUNK])

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            while count < len(data):
                chunk = await stream.receive()
                digest.update(chunk)
                count += len(chunk)
    return count, digest.hexdigest()


@contextmanager
def leased_client(client_config: ClientConfigV1Alpha1, portal, selector: str = "board=mock"):
    """``(lease, client)``: a lease through the stock client and its connection to the exporter
    (``client.children["power"]``, ``client.children["echo"]``). Leaving releases the lease."""
    with ExitStack() as stack:
        lease = stack.enter_context(portal.wrap_async_context_manager(client_config.lease_async(
            selector=selector, exporter_name=None, lease_name=None, duration=timedelta(minutes=10),
            portal=portal, acquisition_timeout=timedelta(seconds=TIMEOUT))))
        client = stack.enter_context(lease.connect())
        yield lease, client
