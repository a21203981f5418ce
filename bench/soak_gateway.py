"""The soak's exporter-gateway load (bench/README.md, "Soak"): the bridge as an exporter's gateway
in front of a test controller and a test router, both from ``Tests/Interop/deployment`` (the
interop suite's mirrors of Jumpstarter's Go services), while the rest of the soak runs.

* the controller runs in the soak's own event loop; the router is a process that sends GOAWAY on
  every connection older than ``--gateway-router-age`` seconds, so the gateway keeps draining
  router connections and opening new ones;
* ``restarter``: every ``--gateway-controller-restart`` seconds the controller stops (its calls
  cut, as when its pod is replaced), stays down ``--gateway-controller-down`` seconds and starts
  again on the same port with its state kept; the soak's Listen call is opened again at once.
  Controller calls that overlap such a restart may end UNAVAILABLE or CANCELLED (a streaming
  call that was writing: INTERNAL "Internal error from Core", see ``restart_tolerant``), and a
  Dialled token the broken Listen call did not deliver may never come: those are counted, not failures
  (anything else is, restart or not); the gateway's ``unavailable`` count must not exceed the
  UNAVAILABLE the soak's calls through the gateway saw in them;
* ``listener``: the soak plays the exporter, with a ``ControllerService/Listen`` call on the
  gateway for its lease, replaced by a new one every ``--gateway-listen-seconds`` (the controller
  ends the older call, as Jumpstarter's does); every ``ListenResponse`` must name the gateway;
* ``relay`` workers: the client side Dials the controller directly, the exporter side opens
  ``RouterService/Stream`` on the gateway with the token the Listen call delivered, the client
  side opens it on the router (a connection of its own per stream, as the stock client); each
  side sends 256 KiB to 4 MiB, SHA-256 checked on arrival, both calls must end OK; one in five
  is cancelled by the exporter side part way, after which the client side must end too;
* ``calls`` worker: controller calls through the gateway: ``ReportStatus``; a streaming call of a
  method no Jumpstarter release has (the interop suite's probe), whose messages, metadata,
  trailers and status (OK, or now and then a random code) must come back unchanged; and now
  and then a ``RouterService/Stream`` with a token the gateway never handed out, which must end
  UNAUTHENTICATED.

The gateway's ``idle-timeout`` is 2 s, so once the load ends its router connections close and
the descriptors can come back to the idle baseline (taken after one controller call, since the
controller's connection is always kept).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time

NAMESPACE, EXPORTER, LEASE, CLIENT = "soak", "soak-exporter", "soak-lease", "soak-client"
EXPORTER_MD = (("jumpstarter-kind", "Exporter"), ("jumpstarter-namespace", NAMESPACE), ("jumpstarter-name", EXPORTER))
CLIENT_MD = (("jumpstarter-kind", "Client"), ("jumpstarter-namespace", NAMESPACE), ("jumpstarter-name", CLIENT))
CHUNK = 64 * 1024
#: How long the exporter side waits for the Listen call to deliver a token the client Dialled.
TOKEN_TIMEOUT = 30.0
#: A controller restart's window lasts until this long after the Listen call is back: calls that
#: overlap it may fail as the restart makes them.
RESTART_GRACE = 5.0


class TokenNotDelivered(Exception):
    """The Listen call did not deliver a token the client Dialled."""


class CallCut(Exception):
    """A call ended with ``code`` (UNAVAILABLE or CANCELLED) where another status was expected."""

    def __init__(self, code, what: str):
        super().__init__(what)
        self.code = code


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


class GatewayLoad:
    """The gateway part of one soak run: its upstreams, channels, workers and bookkeeping."""

    def __init__(self, soak, args):
        self.soak = soak
        self.args = args
        # The interop suite's controller, router and probe service.
        sys.path.insert(0, os.path.join(args.repo, "Tests", "Interop"))
        self.endpoint = ""
        self.handed_out: dict[str, asyncio.Future] = {}
        self.listens: list = []
        self.relays_opened = 0
        self.refused = 0
        #: Controller restarts: (start, end) in monotonic seconds; end None while one goes on.
        self.restart_windows: list[list[float | None]] = []
        #: Outcomes of operations that overlapped a restart, by what ended them.
        self.restart_outcomes: collections.Counter[str] = collections.Counter()
        #: Set by a restart: the listener opens a new Listen call at once.
        self.relisten = asyncio.Event()
        #: Set while a Listen call is open (cleared when a restart cuts it): relays wait for it,
        #: or their Dial would find the exporter not listening.
        self.listened = asyncio.Event()

    # -- set-up

    def credentials(self, token: str | None = None):
        import grpc

        credentials = grpc.ssl_channel_credentials(self.soak.tls_cert)
        if token is not None:
            credentials = grpc.composite_channel_credentials(credentials,
                                                             grpc.access_token_call_credentials(token))
        return credentials

    def channel(self, endpoint: str, token: str | None = None):
        import grpc

        return grpc.aio.secure_channel(endpoint, self.credentials(token),
                                       options=[("grpc.use_local_subchannel_pool", 1)])

    async def start_upstreams(self) -> None:
        """The router (a process) and the controller (in this loop), TLS with the soak's certificate."""
        from deployment.controller import Controller, LeaseState, Status

        key = os.urandom(32).hex()
        with open(self.soak.path("router.key"), "w") as f:
            f.write(key + "\n")
        self.router_log = self.soak.path("router.log")
        with open(self.router_log, "w") as out:
            router = subprocess.Popen(
                [sys.executable, os.path.join(self.args.repo, "Tests", "Interop", "deployment", "router.py"),
                 "--listen", "127.0.0.1:0", "--tls-cert", self.soak.path("tls.crt"),
                 "--tls-key", self.soak.path("tls.key"), "--key-file", self.soak.path("router.key"),
                 "--max-connection-age", str(self.args.gateway_router_age)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.soak.children.append(router)
        deadline = time.monotonic() + 30
        while not (ready := [line for line in open(self.router_log) if line.startswith("ready ")]):
            if router.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test router did not start:\n{open(self.router_log).read()[-2000:]}")
            await asyncio.sleep(0.1)
        self.router_endpoint = ready[0].split()[1]

        self.controller = Controller(router_endpoint=self.router_endpoint, router_key=key.encode())
        self.controller.add_client(NAMESPACE, CLIENT)
        self.controller.add_exporter(NAMESPACE, EXPORTER, {})
        # The exporter is leased and listening-ready (the interop suite's lease_a_raw_exporter).
        self.controller.exporters[(NAMESPACE, EXPORTER)].status = Status.EXPORTER_STATUS_LEASE_READY
        self.controller.exporters[(NAMESPACE, EXPORTER)].lease = LEASE
        self.controller.leases[(NAMESPACE, LEASE)] = LeaseState(
            NAMESPACE, LEASE, CLIENT, "", EXPORTER, datetime.timedelta(days=1), {}, exporter=EXPORTER)
        with open(self.soak.path("tls.crt"), "rb") as f, open(self.soak.path("tls.key"), "rb") as k:
            self.tls_pem = (f.read(), k.read())
        await self.controller.start(*self.tls_pem)
        log(f"test router on {self.router_endpoint} (GOAWAY after {self.args.gateway_router_age:g} s), "
                      f"test controller on {self.controller.endpoint}")

    def config_lines(self) -> list[str]:
        cert, key = self.soak.path("tls.crt"), self.soak.path("tls.key")
        return ["gateway:",
                f"  listen: {{address: 'tcp:127.0.0.1:0', tls: {{cert: '{cert}', key: '{key}'}}}}",
                f"  controller: {{endpoint: '{self.controller.endpoint}', ca: '{cert}'}}",
                "  idle-timeout: 2s"]

    def bridge_started(self, reply: list[dict[str, str]]) -> None:
        self.endpoint = next(item["gateway"] for item in reply if "gateway" in item).removeprefix("tcp:")

    def open_channels(self) -> None:
        # The exporter's connections to the gateway: one with its bearer token for controller calls
        # (Listen, ReportStatus, the probe), one without for most relays (each relay call names its
        # router token); and the client's to the controller (Dial).
        self.exporter_ch = self.channel(self.endpoint, "soak-exporter-token")
        self.relay_ch = self.channel(self.endpoint)
        self.client_ch = self.channel(self.controller.endpoint, "soak-client-token")

    async def close_channels(self) -> None:
        for call in self.listens:
            call.cancel()
        self.listens.clear()
        for channel in (self.exporter_ch, self.relay_ch, self.client_ch):
            await channel.close()
        self.exporter_ch = self.relay_ch = self.client_ch = None

    async def warm_up(self) -> None:
        """One controller call before the idle baseline, on a connection closed again: the gateway
        keeps its connection to the controller, so the baseline has it and no client's."""
        import gc

        channel = self.channel(self.endpoint, "soak-exporter-token")
        await self.report_status(channel)
        await channel.close()
        del channel
        gc.collect()  # grpcio keeps a closed channel's connection until the object is collected

    async def stop_upstreams(self) -> None:
        if getattr(self, "controller", None) is not None:
            await self.controller.stop(0.5)

    def parameters(self) -> str:
        """The report's line on this load."""
        every = self.args.gateway_controller_restart
        restarts = (f"the controller restarted every {every:g} s (down {self.args.gateway_controller_down:g} s, "
                    "same port, state kept); " if every > 0 else "the controller not restarted; ")
        return (f"- gateway: {restarts}Listen on the gateway replaced every {self.args.gateway_listen_seconds:g} s; 2 relay "
                "workers (Dial at the controller, exporter side through the gateway, client side at the router, "
                "256 KiB-4 MiB each way SHA-256 checked, one in five cancelled by the exporter); controller calls "
                "(ReportStatus, a probe method with metadata, trailers and random status codes, now and then an "
                f"unknown router token); the test router sends GOAWAY on connections older than "
                f"{self.args.gateway_router_age:g} s; gateway `idle-timeout: 2s`")

    def counters(self, final: dict) -> str:
        """The report's line on the gateway's counters at the end."""
        return (f"Gateway counters at the end: relays-total={final.get('gw_relays_total')} (the soak opened "
                f"{self.relays_opened}), controller-calls-total={final.get('gw_calls_total')}, refused-tokens="
                f"{final.get('gw_refused_tokens')} (the soak sent {self.refused}), unavailable="
                f"{final.get('gw_unavailable')}, retried={final.get('gw_retried')}; router connections at most "
                f"{max((s.get('gw_router_connections', 0) for s in self.soak.samples), default=0)} at once; "
                f"relays whose end the test router lost itself (grpc core, after its GOAWAY): "
                f"{self.soak.counts.get('gateway-relays-router-dropped', 0)}. "
                f"Controller restarts: {self.restarts()}; operations that overlapped one and ended as a restart "
                f"ends them: {self.restart_summary()}.")

    def restarts(self) -> int:
        return sum(1 for _, end in self.restart_windows if end is not None)

    def restart_summary(self) -> str:
        return ", ".join(f"{what} {n}" for what, n in sorted(self.restart_outcomes.items())) or "none"

    def checks(self, final: dict) -> list[tuple[bool, str]]:
        """The pass rules on the gateway's counters at the end (bench/README.md, "Soak")."""
        unavailable = final.get("gw_unavailable")
        # Through the gateway: Dial goes to the controller directly.
        seen = sum(n for what, n in self.restart_outcomes.items()
                   if what.endswith("UNAVAILABLE") and not what.startswith("Dial "))
        rules = [
            (final.get("gw_relays") == 0 and final.get("gw_router_connections") == 0,
             f"no gateway relay or router connection left after the load (relays={final.get('gw_relays')}, "
             f"router connections={final.get('gw_router_connections')}, idle-timeout 2 s)"),
            (final.get("gw_relays_total") == self.relays_opened and final.get("gw_refused_tokens") == self.refused,
             f"the gateway counted every relay and refused token: relays-total={final.get('gw_relays_total')} "
             f"(the soak opened {self.relays_opened}), refused-tokens={final.get('gw_refused_tokens')} "
             f"(the soak sent {self.refused})"),
            (unavailable is not None and unavailable <= seen,
             f"calls through the gateway found the controller unavailable only during its restarts (unavailable="
             f"{unavailable}, UNAVAILABLE seen by calls through it overlapping a restart: {seen}, "
             f"retried={final.get('gw_retried')})"),
        ]
        if self.args.gateway_controller_restart > 0:
            rules.append((self.restarts() > 0 and self.restart_windows[-1][1] is not None,
                          f"the controller was restarted and the Listen call came back each time "
                          f"({self.restarts()} restarts)"))
        return rules

    # -- controller restarts

    def overlapped_restart(self, started: float) -> bool:
        """Whether an operation that started at ``started`` and ends now overlapped a restart."""
        now = time.monotonic()
        return any(start <= now and (end is None or started <= end) for start, end in self.restart_windows)

    @contextlib.asynccontextmanager
    async def restart_tolerant(self, what: str, streaming: bool = False):
        """Runs the block; a controller call it makes that fails as a restart makes calls fail
        (UNAVAILABLE, CANCELLED, a token never delivered) while the block overlapped a restart is
        counted in ``outcome["tolerated"]``, not raised. Anything else is raised.

        ``streaming``: the block writes on a streaming call, and grpcio reports INTERNAL
        "Internal error from Core" when a call's status (here the stopping controller's,
        passed on unchanged) arrives while one of its writes is in flight; directly at the
        controller it would be the same."""
        import grpc

        codes = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        outcome = {"tolerated": False}
        started = time.monotonic()
        try:
            yield outcome
        except (grpc.aio.AioRpcError, CallCut) as error:
            code = error.code if isinstance(error, CallCut) else error.code()
            raced = streaming and code == grpc.StatusCode.INTERNAL and isinstance(error, grpc.aio.AioRpcError) \
                and error.details() == "Internal error from Core"
            if (code not in codes and not raced) or not self.overlapped_restart(started):
                raise
            self.restart_outcomes[f"{what} {code.name}"] += 1
            outcome["tolerated"] = True
        except TokenNotDelivered:
            if not self.overlapped_restart(started):
                raise
            self.restart_outcomes[f"{what} token not delivered"] += 1
            outcome["tolerated"] = True

    async def restarter(self) -> None:
        """Restarts the controller every so often, as a replaced pod: its calls cut, down for a
        while, back on the same port with its state kept; then waits for the Listen call."""
        every, down = self.args.gateway_controller_restart, self.args.gateway_controller_down
        if every <= 0:
            return
        port = self.controller.port
        while True:
            try:
                await asyncio.wait_for(self.soak.stop.wait(), every)
                return
            except asyncio.TimeoutError:
                pass
            window: list[float | None] = [time.monotonic(), None]
            self.restart_windows.append(window)
            await self.controller.stop(0)
            # The controller stays down this long, as a replaced pod does: not waiting for anything.
            await asyncio.sleep(down)
            await self.controller.start(*self.tls_pem, f"127.0.0.1:{port}")
            try:
                await self.controller.wait_until(lambda c: c.listening(NAMESPACE, LEASE), 30, "Listen again")
            except Exception as error:  # noqa: BLE001 - reported, the soak goes on
                self.soak.fail(f"gateway: the Listen call did not come back after a controller restart: {error}")
            window[1] = time.monotonic() + RESTART_GRACE
            self.soak.count("gateway-controller-restarts")


    # -- status

    @staticmethod
    def sample(reply: list[dict[str, str]]) -> dict[str, int]:
        """The gateway's counters in one ``status`` reply (man jmp-bridge.8, "Control socket")."""
        line = next((item for item in reply if "gateway" in item), None)
        if line is None:
            return {}
        routers = [item for item in reply if item.get("role") == "router"]
        return {"gw_relays": int(line["relays"]), "gw_relays_total": int(line["relays-total"]),
                "gw_calls_total": int(line["controller-calls-total"]),
                "gw_refused_tokens": int(line["refused-tokens"]), "gw_unavailable": int(line["unavailable"]),
                "gw_retried": int(line["retried"]),
                "gw_router_connections": sum(int(item.get("connections", 0)) for item in routers)}

    # -- workers

    def tasks(self) -> list[asyncio.Future]:
        soak = self.soak
        return [asyncio.ensure_future(self.listener()), asyncio.ensure_future(self.restarter()),
                *(asyncio.ensure_future(soak.worker(f"gateway-relay-{i}", self.relay, pause=0.05)) for i in range(2)),
                asyncio.ensure_future(soak.worker("gateway-calls", self.calls, pause=0.2))]

    async def listener(self) -> None:
        """Keeps a Listen call open on the gateway, replaced by a new one every so often."""
        from jumpstarter_protocol import jumpstarter_pb2, jumpstarter_pb2_grpc

        while True:
            self.relisten.clear()
            call = jumpstarter_pb2_grpc.ControllerServiceStub(self.exporter_ch).Listen(
                jumpstarter_pb2.ListenRequest(lease_name=LEASE), metadata=EXPORTER_MD)
            self.listens.append(call)
            ended = self.soak.spawn(self.dispatch(call))
            listening = asyncio.ensure_future(
                self.controller.wait_until(lambda c: c.listening(NAMESPACE, LEASE), 30, "Listen"))
            await asyncio.wait([listening, ended], return_when=asyncio.FIRST_COMPLETED)
            if not listening.done():
                # The call ended before the controller had it (a restart cut it, dispatch says
                # whether that may be): open another shortly, as the stock exporter retries.
                listening.cancel()
                if self.soak.stop.is_set():
                    return
                await asyncio.sleep(0.5)
                continue
            if listening.exception() is not None:
                self.soak.fail(f"gateway Listen: not listening within 30 s: {listening.exception()}")
            else:
                self.listened.set()
            self.soak.count("gateway-listens")
            stop = asyncio.ensure_future(self.soak.stop.wait())
            relisten = asyncio.ensure_future(self.relisten.wait())
            await asyncio.wait([stop, relisten], timeout=self.args.gateway_listen_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            relisten.cancel()
            if self.soak.stop.is_set():
                return  # the last call stays open until the channels close: the relays' last tokens

    async def dispatch(self, call) -> None:
        """Hands each token the Listen call delivers to the relay waiting for it; a call the
        controller ends (a newer one replaced it) must end OK."""
        import grpc

        started = time.monotonic()
        try:
            async for response in call:
                if response.router_endpoint != self.endpoint:
                    self.soak.fail(f"gateway Listen: router_endpoint {response.router_endpoint!r}, "
                                   f"expected the gateway's {self.endpoint!r}")
                future = self.handed_out.setdefault(response.router_token, asyncio.get_running_loop().create_future())
                if not future.done():
                    future.set_result(None)
            code = await call.code()
            if code != grpc.StatusCode.OK:
                self.soak.fail(f"gateway Listen ended with {code.name}: {await call.details()}")
        except asyncio.CancelledError:
            pass
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) \
                    and self.overlapped_restart(started):
                self.restart_outcomes[f"Listen {error.code().name}"] += 1
                self.listened.clear()  # relays wait for the next Listen call instead of Dialling in vain
                self.relisten.set()
            elif error.code() != grpc.StatusCode.CANCELLED or not self.soak.stop.is_set():
                self.soak.fail(f"gateway Listen failed: {error.code().name} {error.details()}")
        finally:
            if call in self.listens:
                self.listens.remove(call)

    async def relay(self) -> None:
        import grpc
        from jumpstarter_protocol import jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2, router_pb2_grpc

        from deployment.router_calls import read_payloads, write_payloads

        self.soak.step("waiting for a Listen call")
        await self.listened.wait()
        async with self.restart_tolerant("Dial") as outcome:
            self.soak.step("Dial")
            dial = await jumpstarter_pb2_grpc.ControllerServiceStub(self.client_ch).Dial(
                jumpstarter_pb2.DialRequest(lease_name=LEASE), metadata=CLIENT_MD, timeout=30)
            token = dial.router_token
            self.soak.step("waiting for the Listen call to deliver the token")
            try:
                await asyncio.wait_for(
                    asyncio.shield(self.handed_out.setdefault(token, asyncio.get_running_loop().create_future())),
                    TOKEN_TIMEOUT)
            except asyncio.TimeoutError:
                raise TokenNotDelivered(f"the Listen call did not deliver a Dialled token within "
                                        f"{TOKEN_TIMEOUT:g} s") from None
            finally:
                self.handed_out.pop(token, None)
        if outcome["tolerated"]:
            return
        auth = (("authorization", f"Bearer {token}"),)
        if random.random() < 1 / 3:
            exporter_ch = self.channel(self.endpoint)  # a connection of its own, as the stock exporter
            self.soak.track(exporter_ch)
            self.soak.count("connections")
        else:
            exporter_ch = self.relay_ch
        router_ch = self.channel(self.router_endpoint)
        self.soak.track(router_ch)
        exporter = router_pb2_grpc.RouterServiceStub(exporter_ch).Stream(metadata=auth)
        client = router_pb2_grpc.RouterServiceStub(router_ch).Stream(metadata=auth)
        self.soak.track(exporter)
        self.soak.track(client)
        up, down = random.randbytes(random.randint(256 << 10, 4 << 20)), random.randbytes(random.randint(256 << 10, 4 << 20))

        self.soak.step(f"exporter's first write through the gateway ({'own' if exporter_ch is not self.relay_ch else 'shared'} "
                       "connection)", lambda: f"its channel is {exporter_ch.get_state().name}")
        await exporter.write(router_pb2.StreamRequest(payload=up[:CHUNK]))
        self.relays_opened += 1
        if random.random() < 0.2:
            # The exporter gives up part way, once the router paired the two calls: both end.
            self.soak.step("cancel: client side's first read")
            first = await client.read()
            if first == grpc.aio.EOF or first.payload != up[:CHUNK]:
                raise RuntimeError("relay: the client side did not get the exporter's first message")
            self.soak.step("cancel: both sides writing and reading")
            results = await asyncio.gather(write_payloads(exporter, up[CHUNK:], random.randint(0, len(up) - CHUNK)),
                                           write_payloads(client, down), read_payloads(exporter), read_payloads(client),
                                           return_exceptions=True)
            # The router ends the client's call (OK or CANCELLED, as the Go router): it must end.
            self.soak.step("cancel: the client side's status")
            client_code = await asyncio.wait_for(client.code(), 30)
            if not exporter.cancelled() or client_code is None:
                raise RuntimeError("relay cancelled by the exporter: the client side did not end "
                                   f"({[type(r).__name__ for r in results]})")
            self.soak.count("gateway-relays-cancelled")
            return
        self.soak.step("both sides writing and reading")
        results = await asyncio.gather(
            write_payloads(exporter, up[CHUNK:]), write_payloads(client, down), read_payloads(exporter),
            read_payloads(client), return_exceptions=True)
        if isinstance(results[2], grpc.aio.AioRpcError) and await self.router_dropped(token, results, up, down, client):
            self.soak.count("gateway-relays-router-dropped", len(up))
            return
        for result in results:
            if isinstance(result, BaseException):
                raise result
        _, _, to_exporter, to_client = results
        if (len(to_exporter), len(to_client)) != (len(down), len(up)) or \
                hashlib.sha256(to_exporter).digest() != hashlib.sha256(down).digest() or \
                hashlib.sha256(to_client).digest() != hashlib.sha256(up).digest():
            raise RuntimeError(f"relay of {len(up)} + {len(down)} bytes: {len(to_client)} + {len(to_exporter)} "
                               "arrived, or with a different SHA-256")
        self.soak.step("both sides' statuses")
        codes = (await exporter.code(), await client.code())
        if codes != (grpc.StatusCode.OK, grpc.StatusCode.OK):
            raise RuntimeError(f"relay ended with {codes[0].name} (exporter) and {codes[1].name} (client)")
        self.soak.count("gateway-relays", len(up) + len(down))

    async def router_dropped(self, token: str, results: list, up: bytes, down: bytes, client) -> bool:
        """Whether a relay's exporter side failed only because the test router lost the end of its
        call itself (bench/README.md, "Soak"): the gateway reports that the router's connection
        closed under the call, while the router's own log has the call ending OK with every byte
        written towards the exporter, and the client side got all of the exporter's bytes and OK.
        grpc core (the test router's) closes a connection it sent GOAWAY on once it counts no call
        on it, with the end of a call it wrote still waiting for the gateway's flow control."""
        import grpc

        error = results[2]
        lost = f"jmp-bridge gateway: lost the call to {self.router_endpoint} ("
        if error.code() != grpc.StatusCode.UNAVAILABLE or not (error.details() or "").startswith(lost) or \
                not any(reason in error.details() for reason in ("the server closed the connection",
                                                                  "Connection reset by peer")):
            return False
        # The exporter's writes may fail with its call; its bytes all reached the client side.
        if not (results[0] is None or isinstance(results[0], (grpc.aio.AioRpcError, asyncio.InvalidStateError))) \
                or isinstance(results[3], BaseException) or results[3] != up or await client.code() != grpc.StatusCode.OK:
            return False
        payload = token.split(".")[1]
        sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
        # The router writes its line before the client side's call ends, which it has.
        pattern = re.compile(rf"^stream sub={re.escape(sub)} end status=OK bytes-to-first=(\d+) bytes-to-second=(\d+)$")
        with open(self.router_log) as log_file:
            ends = [match for line in log_file if (match := pattern.match(line.rstrip("\n")))]
        return len(ends) == 1 and sorted(map(int, ends[0].groups())) == sorted((len(up), len(down)))

    async def report_status(self, channel=None) -> None:
        from deployment.controller import Status
        from jumpstarter_protocol import jumpstarter_pb2, jumpstarter_pb2_grpc

        await jumpstarter_pb2_grpc.ControllerServiceStub(channel or self.exporter_ch).ReportStatus(
            jumpstarter_pb2.ReportStatusRequest(status=Status.EXPORTER_STATUS_LEASE_READY, message="soak"),
            metadata=EXPORTER_MD, timeout=30)

    async def calls(self) -> None:
        async with self.restart_tolerant("ReportStatus") as outcome:
            self.soak.step("ReportStatus")
            await self.report_status()
        if outcome["tolerated"]:
            return
        self.soak.count("gateway-controller-calls")
        async with self.restart_tolerant("probe", streaming=True) as outcome:
            self.soak.step("probe")
            await self.probe()
        if outcome["tolerated"]:
            return
        self.soak.step("unknown token")
        await self.unknown_token()
        # The test controller records every call; the soak does not need them.
        self.controller.calls.clear()
        self.controller.dials.clear()
        self.controller.delivered.clear()

    async def probe(self) -> None:
        """A method no Jumpstarter release has, through the gateway: messages, metadata, trailers
        and status come back unchanged."""
        import grpc
        from deployment import probe

        tag = os.urandom(8).hex()
        code = random.choice(list(grpc.StatusCode)[1:]) if random.random() < 0.2 else grpc.StatusCode.OK
        details = f"soak détails {tag}" if code != grpc.StatusCode.OK else ""
        metadata = [("x-soak", tag), ("x-code", str(code.value[0])),
                    ("x-details-bin", details.encode())] + list(EXPORTER_MD)
        echo = self.exporter_ch.stream_stream(probe.ECHO)(metadata=metadata, timeout=30)
        self.soak.track(echo)
        messages = [random.randbytes(random.randint(1, 256 << 10)) for _ in range(random.randint(1, 4))]
        got = []
        for message in messages:
            await echo.write(message)
            got.append(await echo.read())
        await echo.done_writing()
        try:
            if await echo.read() != grpc.aio.EOF:
                raise RuntimeError("probe call through the gateway: a message more came back")
        except grpc.aio.AioRpcError as error:  # a status other than OK raises here
            if error.code() != code:
                raise  # not the status asked for: a controller restart may have cut the call
        if got != messages:
            raise RuntimeError("probe call through the gateway: the messages came back changed")
        if (await echo.code(), await echo.details()) != (code, details):
            if await echo.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise CallCut(await echo.code(), f"probe call: {await echo.details()}")
            raise RuntimeError(f"probe call: status {(await echo.code()).name} {await echo.details()!r}, "
                               f"expected {code.name} {details!r}")
        initial, trailing = await echo.initial_metadata(), await echo.trailing_metadata()
        if dict(initial).get("x-soak") != tag or dict(trailing).get("x-trailer-bin") != messages[0][:64]:
            raise RuntimeError(f"probe call: metadata changed on the way ({initial}, {trailing})")
        self.soak.count("gateway-controller-calls", sum(map(len, messages)) * 2)

    async def unknown_token(self) -> None:
        """Now and then a router stream with a token the gateway never handed out."""
        import grpc
        from jumpstarter_protocol import router_pb2, router_pb2_grpc

        if random.random() < 0.1:
            # A token the gateway never handed out: refused, never forwarded.
            stream = router_pb2_grpc.RouterServiceStub(self.relay_ch).Stream(
                metadata=(("authorization", "Bearer not-a-token-the-gateway-handed-out"),), timeout=30)
            self.soak.track(stream)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stream.write(router_pb2.StreamRequest(payload=b"x"))
            if await stream.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise RuntimeError(f"a token never handed out ended {(await stream.code()).name}, "
                                   "expected UNAUTHENTICATED")
            self.refused += 1
            self.soak.count("gateway-unknown-tokens")
