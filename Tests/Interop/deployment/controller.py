"""A test controller: the parts of Jumpstarter's controller that a stock exporter and a stock
client (jumpstarter 0.9.0) call, on ``jumpstarter_protocol``'s generated grpc.aio stubs.

What each side calls (read from the installed ``jumpstarter`` package):

* exporter (``jumpstarter/exporter/exporter.py``): ``Register`` (once, at start), ``ReportStatus``
  (AVAILABLE after registering, LEASE_READY once it listens for a lease, AVAILABLE after it,
  OFFLINE before ``Unregister`` on SIGTERM), ``Status`` (a stream telling it whether it is leased),
  ``Listen`` (per lease: a stream of ``ListenResponse{router_endpoint, router_token}``, one per
  client connection), ``ReleaseLease`` (only from lease hooks) and ``Unregister``.
* client (``jumpstarter/client/lease.py``, ``jumpstarter/client/grpc.py:ClientService``):
  ``jumpstarter.client.v1.ClientService`` ``CreateLease``, ``GetLease`` (polled until the Ready
  condition), ``GetExporter`` (labels), ``DeleteLease`` (on leaving the lease), and
  ``ControllerService.Dial`` for every connection it makes to the exporter.

Mirrored from jumpstarter-dev/jumpstarter ``controller/internal/service/controller_service.go``:

* authentication (``authenticateExporter``/``authenticateClient`` → ``oidc.Verify*ObjectToken``):
  any bearer token is accepted, but ``authorization: Bearer …``, ``jumpstarter-kind``,
  ``jumpstarter-namespace`` and ``jumpstarter-name`` must be present (UNAUTHENTICATED otherwise);
  the kind must fit the service (``Exporter`` for exporter calls, ``Client`` for ``Dial`` and the
  ClientService: INVALID_ARGUMENT "object kind mismatch" otherwise), and the named object must
  have been declared with :meth:`Controller.add_exporter` / :meth:`Controller.add_client` (the
  Go controller looks the CRD up: NOT_FOUND). Every authenticated call is recorded in
  :attr:`Controller.calls` with its metadata, token and peer.
* ``Register``/``Unregister``/``ReportStatus`` (``release_lease`` releases the lease, as
  ``handleExporterLeaseRelease``), ``ReleaseLease`` (``releaseLeaseAsExporter``).
* ``Status``: the current ``StatusResponse{leased, lease_name, client_name}`` at once, then each
  change (identical consecutive messages are not repeated).
* ``Listen``: the lease must be held by the calling exporter ("permission denied"); one queue
  per call (8 deep); a newer ``Listen`` for the lease supersedes the older, which drains its
  queue and ends (``swapListenQueue``).
* ``Dial``: the lease must belong to the client ("permission denied") and have an exporter
  ("lease not active"); while the exporter is still AVAILABLE the call waits up to 30 s for it
  to become ready (the Go code re-polls with backoff; this one waits on the state change), then
  ``checkExporterStatusForDriverCalls``; then ONE token is minted (``tokens.mint``: HS256,
  iss/aud/sub/exp/nbf/iat/jti, a fresh stream uuid as ``sub``), sent to the exporter's Listen
  queue as ``ListenResponse`` (``sendToListener``: UNAVAILABLE when nobody listens,
  RESOURCE_EXHAUSTED when the queue is full) and returned to the client as ``DialResponse`` —
  both sides present the same token, so the router pairs them by its ``sub``. With
  :attr:`Controller.distinct_tokens` set, each side gets its own token for the same ``sub``
  instead (the router only needs the ``sub`` to match; nothing may rely on the tokens being
  equal). Every Dial is recorded in :attr:`Controller.dials`.
* the lease reconciler, reduced: a lease is assigned as soon as an exporter that matches its
  selector (``k=v``, ``k==v``, ``k!=v``, ``k``, comma-separated) or ``exporter_name`` is online
  (its ``Status`` stream is open), AVAILABLE and not leased; then the lease reports
  Ready=True/Pending=False, before that Pending=True. Releasing reports Ready=False (Released).
  Lease expiry is not modelled.

Not implemented (UNIMPLEMENTED): ``AuditStream``, the legacy ControllerService ``GetLease``/
``RequestLease``/``ListLeases``, and ClientService ``List*``/``UpdateLease``/``RotateToken``.

All state lives on the event loop that runs the server; :meth:`Controller.wait_until` waits
(bounded) for a predicate over that state, re-checking it on every change.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import grpc
from google.protobuf import empty_pb2
from jumpstarter_protocol import client_pb2, client_pb2_grpc, jumpstarter_pb2, jumpstarter_pb2_grpc, kubernetes_pb2
from jumpstarter_protocol.jumpstarter.v1 import common_pb2

if __package__:
    from . import probe
    from .server_options import KEEPALIVE_ENFORCEMENT
    from .tokens import mint
else:
    import probe
    from server_options import KEEPALIVE_ENFORCEMENT
    from tokens import mint

Status = common_pb2.ExporterStatus
#: How long Dial waits for an exporter that is still AVAILABLE (Go: maxTotalWait).
DIAL_READY_TIMEOUT = 30.0
#: Depth of each Listen queue (Go: ``make(chan *pb.ListenResponse, 8)``).
LISTEN_QUEUE_DEPTH = 8

_READY_FOR_DRIVER_CALLS = {
    Status.EXPORTER_STATUS_LEASE_READY, Status.EXPORTER_STATUS_BEFORE_LEASE_HOOK,
    Status.EXPORTER_STATUS_AFTER_LEASE_HOOK, Status.EXPORTER_STATUS_UNSPECIFIED,
}


@dataclass(frozen=True)
class Identity:
    """Who made a call, from its metadata (``jumpstarter-kind``/``-namespace``/``-name``, bearer token)."""

    kind: str
    namespace: str
    name: str
    token: str


@dataclass(frozen=True)
class Call:
    """One authenticated call: ``service`` ("controller" or "client"), ``method``, who, from where."""

    service: str
    method: str
    identity: Identity
    peer: str


@dataclass(eq=False)
class ExporterState:
    namespace: str
    name: str
    labels: dict[str, str]
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    registered: bool = False
    reports: list = field(default_factory=list)
    status: int = Status.EXPORTER_STATUS_UNSPECIFIED
    status_message: str = ""
    status_streams: int = 0
    lease: str | None = None

    @property
    def online(self) -> bool:
        return self.status_streams > 0


@dataclass(eq=False)
class LeaseState:
    namespace: str
    name: str
    client: str
    selector: str
    exporter_name: str
    duration: timedelta
    tags: dict[str, str]
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    exporter: str | None = None
    begin: datetime | None = None
    end: datetime | None = None
    released: bool = False


@dataclass(frozen=True)
class Dial:
    """One successful Dial: the stream id (``sub``) and what both sides were told."""

    lease: str
    client: str
    sub: str
    router_endpoint: str
    #: The token in the DialResponse (the client's side).
    router_token: str
    #: The token in the exporter's ListenResponse (equal to ``router_token`` unless distinct).
    exporter_token: str


@dataclass(eq=False)
class _ListenQueue:
    items: deque = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    superseded: bool = False


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors as ``metav1.FormatLabelSelector`` writes them."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in re.split(r"==?", term, maxsplit=1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


class Controller(jumpstarter_pb2_grpc.ControllerServiceServicer):
    """The ControllerService, plus the ClientService (:class:`ClientService`) on the same server.

    ``router_endpoint`` is what Dial hands out (the Go controller's configured router); tests may
    change it between Dials. ``router_key`` signs the router tokens.
    """

    def __init__(self, *, router_endpoint: str, router_key: bytes):
        self.router_endpoint = router_endpoint
        self.router_key = router_key
        #: Mint one token per side (same ``sub``) instead of the Go controller's shared one.
        self.distinct_tokens = False
        self.exporters: dict[tuple[str, str], ExporterState] = {}
        self.clients: set[tuple[str, str]] = set()
        self.leases: dict[tuple[str, str], LeaseState] = {}
        self.calls: list[Call] = []
        self.dials: list[Dial] = []
        #: Every ListenResponse written to an exporter's Listen stream, in order.
        self.delivered: list[jumpstarter_pb2.ListenResponse] = []
        self._listen_queues: dict[tuple[str, str], _ListenQueue] = {}
        self._changed = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    # ---------------------------------------------------------------------------------------
    # objects that exist before anyone connects (the Go controller's Exporter and Client CRDs)

    def add_exporter(self, namespace: str, name: str, labels: dict[str, str] | None = None) -> None:
        self.exporters[(namespace, name)] = ExporterState(namespace, name, dict(labels or {}))

    def add_client(self, namespace: str, name: str) -> None:
        self.clients.add((namespace, name))

    # ---------------------------------------------------------------------------------------
    # serving

    async def start(self, cert: bytes, key: bytes, listen: str = "127.0.0.1:0") -> int:
        """Serves ControllerService and ClientService (and the test-only :mod:`probe` service)
        with TLS on ``listen``; returns the port. After :meth:`stop` it may start again, on the
        same port, with its state kept (a restarted controller)."""
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *KEEPALIVE_ENFORCEMENT])
        jumpstarter_pb2_grpc.add_ControllerServiceServicer_to_server(self, self._server)
        client_pb2_grpc.add_ClientServiceServicer_to_server(ClientService(self), self._server)
        self._server.add_generic_rpc_handlers((probe.handler(),))
        self.port = self._server.add_secure_port(listen, grpc.ssl_server_credentials([(key, cert)]))
        assert self.port, f"cannot listen on {listen}"
        await self._server.start()
        return self.port

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---------------------------------------------------------------------------------------
    # change notification

    def _notify(self) -> None:
        """Wakes everything waiting for a state change (Status streams, Dial, :meth:`wait_until`)."""
        self._reconcile()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _next_change(self, timeout: float | None = None) -> None:
        changed = self._changed
        if timeout is None:
            await changed.wait()
        else:
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def wait_until(self, predicate, timeout: float, what: str = "condition"):
        """Returns ``predicate(self)`` once it is truthy; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; calls: "
                                     f"{[(c.service, c.method, c.identity.name) for c in self.calls]}")
            await self._next_change(remaining)

    # ---------------------------------------------------------------------------------------
    # authentication

    async def authenticate(self, context, kind: str, service: str, method: str) -> Identity:
        metadata: dict[str, list[str]] = {}
        for name, value in context.invocation_metadata() or ():
            metadata.setdefault(name.lower(), []).append(value)

        def single(name: str) -> str:
            values = metadata.get(name, [])
            return values[0] if len(values) == 1 else ""

        authorization = single("authorization")
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        if not token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid authorization")
        missing = [name for name in ("jumpstarter-kind", "jumpstarter-namespace", "jumpstarter-name")
                   if not single(name)]
        if missing:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"missing metadata: {', '.join(missing)}")
        identity = Identity(single("jumpstarter-kind"), single("jumpstarter-namespace"),
                            single("jumpstarter-name"), token)
        if identity.kind != kind:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "object kind mismatch")
        known = (identity.namespace, identity.name) in (self.exporters if kind == "Exporter" else self.clients)
        if not known:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"{kind.lower()} {identity.namespace}/{identity.name}: not found")
        self.calls.append(Call(service, method, identity, context.peer()))
        self._notify()
        return identity

    async def _exporter(self, context, method: str) -> ExporterState:
        identity = await self.authenticate(context, "Exporter", "controller", method)
        return self.exporters[(identity.namespace, identity.name)]

    # ---------------------------------------------------------------------------------------
    # leases

    def _reconcile(self) -> None:
        """Assigns pending leases to free, online, AVAILABLE exporters that match them."""
        for lease in sorted(self.leases.values(), key=lambda lease: lease.created):
            if lease.released or lease.exporter is not None:
                continue
            for exporter in self.exporters.values():
                if (exporter.namespace == lease.namespace and exporter.online and exporter.lease is None
                        and exporter.status == Status.EXPORTER_STATUS_AVAILABLE
                        and (not lease.exporter_name or lease.exporter_name == exporter.name)
                        and selector_matches(lease.selector, exporter.labels)):
                    lease.exporter, lease.begin = exporter.name, datetime.now(timezone.utc)
                    exporter.lease = lease.name
                    break

    def release(self, lease: LeaseState) -> None:
        if lease.released:
            return
        lease.released, lease.end = True, datetime.now(timezone.utc)
        if lease.exporter is not None:
            exporter = self.exporters.get((lease.namespace, lease.exporter))
            if exporter is not None and exporter.lease == lease.name:
                exporter.lease = None
        self._notify()

    def lease_proto(self, lease: LeaseState) -> client_pb2.Lease:
        now = datetime.now(timezone.utc)

        def condition(kind: str, status: bool, reason: str, message: str = "") -> kubernetes_pb2.Condition:
            return kubernetes_pb2.Condition(type=kind, status="True" if status else "False", reason=reason,
                                            message=message, observedGeneration=1,
                                            lastTransitionTime=kubernetes_pb2.Time(seconds=int(now.timestamp())))

        if lease.released:
            conditions = [condition("Pending", False, "Released"), condition("Ready", False, "Released")]
        elif lease.exporter is not None:
            conditions = [condition("Pending", False, "Ready"), condition("Ready", True, "Ready")]
        else:
            conditions = [condition("Pending", True, "NotReady", "waiting for a matching exporter")]
        proto = client_pb2.Lease(
            name=f"namespaces/{lease.namespace}/leases/{lease.name}",
            selector=lease.selector,
            client=f"namespaces/{lease.namespace}/clients/{lease.client}",
            conditions=conditions,
            tags=lease.tags,
        )
        if lease.exporter_name:
            proto.exporter_name = lease.exporter_name
        proto.duration.FromTimedelta(lease.duration)
        if lease.begin is not None:
            proto.effective_begin_time.FromDatetime(lease.begin)
            proto.effective_duration.FromTimedelta(max((lease.end or now) - lease.begin, timedelta(0)))
        if lease.end is not None:
            proto.effective_end_time.FromDatetime(lease.end)
        if lease.exporter is not None:
            proto.exporter = f"namespaces/{lease.namespace}/exporters/{lease.exporter}"
        return proto

    # ---------------------------------------------------------------------------------------
    # ControllerService: exporter side

    async def Register(self, request, context):
        exporter = await self._exporter(context, "Register")
        for key in [key for key in exporter.labels if key.startswith("jumpstarter.dev/")]:
            del exporter.labels[key]
        exporter.labels.update({k: v for k, v in request.labels.items() if k.startswith("jumpstarter.dev/")})
        exporter.reports = list(request.reports)
        exporter.registered = True
        self._notify()
        return jumpstarter_pb2.RegisterResponse(uuid=exporter.uid)

    async def Unregister(self, request, context):
        exporter = await self._exporter(context, "Unregister")
        exporter.registered, exporter.reports = False, []
        exporter.status, exporter.status_message = Status.EXPORTER_STATUS_OFFLINE, request.reason
        self._notify()
        return jumpstarter_pb2.UnregisterResponse()

    async def ReportStatus(self, request, context):
        exporter = await self._exporter(context, "ReportStatus")
        exporter.status, exporter.status_message = request.status, request.message
        if request.release_lease and exporter.lease is not None:
            self.release(self.leases[(exporter.namespace, exporter.lease)])
        self._notify()
        return jumpstarter_pb2.ReportStatusResponse()

    async def ReleaseLease(self, request, context):
        metadata = {name.lower(): value for name, value in context.invocation_metadata() or ()}
        if metadata.get("jumpstarter-kind") != "Exporter":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ReleaseLease is implemented for exporters only")
        exporter = await self._exporter(context, "ReleaseLease")
        lease = self.leases.get((exporter.namespace, request.name))
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"lease {request.name} not found")
        if lease.exporter != exporter.name:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "lease is not held by this exporter")
        self.release(lease)
        return jumpstarter_pb2.ReleaseLeaseResponse()

    async def Status(self, request, context):
        exporter = await self._exporter(context, "Status")
        exporter.status_streams += 1
        if exporter.status == Status.EXPORTER_STATUS_OFFLINE:  # Go clears a stale Offline on connect
            exporter.status, exporter.status_message = Status.EXPORTER_STATUS_UNSPECIFIED, ""
        self._notify()
        last = None
        try:
            while True:
                changed = self._changed  # taken before yielding: no change goes unnoticed
                lease = self.leases.get((exporter.namespace, exporter.lease)) if exporter.lease else None
                message = jumpstarter_pb2.StatusResponse(leased=lease is not None)
                if lease is not None:
                    message.lease_name, message.client_name = lease.name, lease.client
                if message != last:
                    yield message
                    last = message
                await changed.wait()
        finally:
            exporter.status_streams -= 1
            self._notify()

    async def Listen(self, request, context):
        exporter = await self._exporter(context, "Listen")
        if not request.lease_name:
            await context.abort(grpc.StatusCode.UNKNOWN, "empty lease name")
        lease = self.leases.get((exporter.namespace, request.lease_name))
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"lease {request.lease_name} not found")
        if lease.exporter != exporter.name:
            await context.abort(grpc.StatusCode.UNKNOWN, "permission denied")
        key = (exporter.namespace, lease.name)
        queue = _ListenQueue()
        previous = self._listen_queues.get(key)
        if previous is not None:
            previous.superseded = True
            previous.wakeup.set()
        self._listen_queues[key] = queue
        self._notify()
        try:
            while True:
                while queue.items:
                    message = queue.items.popleft()
                    yield message
                    self.delivered.append(message)
                    self._notify()
                if queue.superseded:
                    return
                queue.wakeup.clear()
                await queue.wakeup.wait()
        finally:
            queue.superseded = True
            if self._listen_queues.get(key) is queue:
                del self._listen_queues[key]
            self._notify()

    def listening(self, namespace: str, lease: str) -> bool:
        """Whether an exporter's Listen stream for the lease is open."""
        queue = self._listen_queues.get((namespace, lease))
        return queue is not None and not queue.superseded

    # ---------------------------------------------------------------------------------------
    # ControllerService: client side

    async def Dial(self, request, context):
        identity = await self.authenticate(context, "Client", "controller", "Dial")
        if not request.lease_name:
            await context.abort(grpc.StatusCode.UNKNOWN, "empty lease name")
        lease = self.leases.get((identity.namespace, request.lease_name))
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"lease {request.lease_name} not found")
        if lease.client != identity.name:
            await context.abort(grpc.StatusCode.UNKNOWN, "permission denied")
        if lease.exporter is None or lease.released:
            await context.abort(grpc.StatusCode.UNKNOWN, "lease not active")
        exporter = self.exporters[(lease.namespace, lease.exporter)]
        deadline = time.monotonic() + DIAL_READY_TIMEOUT
        while exporter.status == Status.EXPORTER_STATUS_AVAILABLE and time.monotonic() < deadline:
            await self._next_change(deadline - time.monotonic())
        if exporter.status not in _READY_FOR_DRIVER_CALLS:
            name = Status.Name(exporter.status).removeprefix("EXPORTER_STATUS_")
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"exporter not ready (status: {name})")

        sub = str(uuid.uuid4())
        token = mint(self.router_key, sub)
        exporter_token = mint(self.router_key, sub) if self.distinct_tokens else token
        response = jumpstarter_pb2.ListenResponse(router_endpoint=self.router_endpoint, router_token=exporter_token)
        queue = self._listen_queues.get((lease.namespace, lease.name))
        if queue is None or queue.superseded:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"exporter is not listening on lease {lease.name}")
        if len(queue.items) >= LISTEN_QUEUE_DEPTH:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"listener buffer full on lease {lease.name}")
        queue.items.append(response)
        queue.wakeup.set()
        self.dials.append(Dial(lease.name, identity.name, sub, self.router_endpoint, token, exporter_token))
        self._notify()
        return jumpstarter_pb2.DialResponse(router_endpoint=self.router_endpoint, router_token=token)


_IDENTIFIER = re.compile(r"^namespaces/([^/]+)/(leases|exporters|clients)/([^/]+)$")


class ClientService(client_pb2_grpc.ClientServiceServicer):
    """``jumpstarter.client.v1.ClientService`` over the :class:`Controller`'s state
    (Go: ``controller/internal/service/client/v1/client_service.go``)."""

    def __init__(self, controller: Controller):
        self.controller = controller

    async def _client(self, context, method: str, namespace: str) -> Identity:
        identity = await self.controller.authenticate(context, "Client", "client", method)
        if identity.namespace != namespace:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "namespace mismatch")
        return identity

    @staticmethod
    async def _parse(context, identifier: str, kind: str) -> tuple[str, str]:
        match = _IDENTIFIER.match(identifier)
        if match is None or match.group(2) != kind:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid {kind} identifier {identifier!r}")
        return match.group(1), match.group(3)

    async def _lease(self, context, identifier: str, method: str) -> LeaseState:
        namespace, name = await self._parse(context, identifier, "leases")
        identity = await self._client(context, method, namespace)
        lease = self.controller.leases.get((namespace, name))
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"lease {name} not found")
        if lease.client != identity.name:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method} permission denied")
        return lease

    async def CreateLease(self, request, context):
        namespace = request.parent.removeprefix("namespaces/")
        identity = await self._client(context, "CreateLease", namespace)
        if not request.lease.selector and not request.lease.exporter_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "one of selector or exporter_name is required")
        name = request.lease_id or str(uuid.uuid4())
        if (namespace, name) in self.controller.leases:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"lease {name} already exists")
        lease = LeaseState(
            namespace=namespace, name=name, client=identity.name, selector=request.lease.selector,
            exporter_name=request.lease.exporter_name,
            duration=request.lease.duration.ToTimedelta() if request.lease.HasField("duration") else timedelta(),
            tags=dict(request.lease.tags),
        )
        self.controller.leases[(namespace, name)] = lease
        self.controller._notify()  # assigns it at once if an exporter is free
        return self.controller.lease_proto(lease)

    async def GetLease(self, request, context):
        return self.controller.lease_proto(await self._lease(context, request.name, "GetLease"))

    async def DeleteLease(self, request, context):
        lease = await self._lease(context, request.name, "DeleteLease")
        if lease.released:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"lease {request.name!r} has already been released")
        self.controller.release(lease)
        return empty_pb2.Empty()

    async def GetExporter(self, request, context):
        namespace, name = await self._parse(context, request.name, "exporters")
        await self._client(context, "GetExporter", namespace)
        exporter = self.controller.exporters.get((namespace, name))
        if exporter is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"exporter {name} not found")
        return client_pb2.Exporter(name=request.name, labels=exporter.labels, online=exporter.online,
                                   status=exporter.status, status_message=exporter.status_message, enabled=True)
