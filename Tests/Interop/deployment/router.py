"""A test router: Jumpstarter's ``jumpstarter.v1.RouterService`` as the Go router serves it.

Mirrors ``controller/internal/service/router_service.go`` (jumpstarter-dev/jumpstarter):

* ``RouterService.authenticate``: the ``authorization: Bearer <jwt>`` metadata must be an HS256
  (or HS384/HS512) JWT signed with the shared router key, iss ``https://jumpstarter.dev/stream``,
  aud ``https://jumpstarter.dev/router``, with ``exp``; its ``sub`` names the stream. Anything
  else ends the call with UNAUTHENTICATED before any frame is read (see ``tokens.verify``).
* ``RouterService.Stream``: the first call for a ``sub`` waits for its peer; the second one
  forwards frames (payload and frame type, unchanged) both ways until both directions reached
  EOF, then both calls end with OK. If one call fails or is cancelled (client RST), the
  forwarding stops and the other call ends too (``router_support.go:Forward``: the errgroup's
  first error cancels everything; the waiting first call returns nil when released).
* ``RouterService.Start``: TLS with the given certificate (the Go router's is self-signed too).

Run it as a process (the deployment fixtures do)::

    python router.py --listen 127.0.0.1:0 --tls-cert C --tls-key K --key-file F [--max-connection-age S]

It prints ``ready 127.0.0.1:PORT`` once serving, then one line per event:
``stream sub=S peer=P waiting|forwarding``, ``stream sub=S end status=CODE`` (the forwarding
call's line adds ``bytes-to-first=N bytes-to-second=M``, payload bytes each way) and
``rejected peer=P reason=...``; SIGTERM/SIGINT stop it (exit 0). :class:`RouterService` can also
be added to an in-process ``grpc.aio`` server.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from jumpstarter_protocol import router_pb2, router_pb2_grpc

if __package__:
    from .server_options import KEEPALIVE_ENFORCEMENT
    from .tokens import InvalidToken, verify
else:  # run as a script
    from server_options import KEEPALIVE_ENFORCEMENT
    from tokens import InvalidToken, verify


def log(line: str) -> None:
    print(line, flush=True)


@dataclass(eq=False)
class _Waiting:
    """The first call of a pair, parked until its peer arrives (Go: ``streamContext``)."""

    context: grpc.aio.ServicerContext
    #: Set by the peer when forwarding ended: the waiting call may return (Go: ``first.cancel()``).
    released: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the waiting call itself ended (its client went away): the peer stops forwarding.
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class PeerGone(Exception):
    """The other call of the pair ended before the forwarding finished."""


class RouterService(router_pb2_grpc.RouterServiceServicer):
    """Pairs ``Stream`` calls by the ``sub`` of their router token and forwards between them."""

    def __init__(self, key: bytes):
        self.key = key
        self.pending: dict[str, _Waiting] = {}

    def _authenticate(self, context) -> str | None:
        values = [value for name, value in context.invocation_metadata() if name == "authorization"]
        if len(values) != 1 or not values[0].startswith("Bearer "):
            return None
        try:
            return verify(self.key, values[0].removeprefix("Bearer ").strip())
        except InvalidToken as error:
            log(f"rejected peer={context.peer()} reason={str(error).replace(' ', '-')}")
            return None

    async def Stream(self, request_iterator, context):
        sub = self._authenticate(context)
        if sub is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid jwt token")
        first = self.pending.get(sub)
        if first is None or first.gone.is_set():
            await self._wait_for_peer(sub, context)
        else:
            del self.pending[sub]
            await self._forward(sub, context, first)

    async def _wait_for_peer(self, sub: str, context) -> None:
        me = _Waiting(context)
        self.pending[sub] = me
        log(f"stream sub={sub} peer={context.peer()} waiting")
        try:
            await me.released.wait()
        finally:
            me.gone.set()
            if self.pending.get(sub) is me:
                del self.pending[sub]
            log(f"stream sub={sub} end status={'OK' if me.released.is_set() else 'CANCELLED'}")

    async def _forward(self, sub: str, context, first: _Waiting) -> None:
        log(f"stream sub={sub} peer={context.peer()} forwarding")
        counts = [0, 0]  # payload bytes: to the first call, to this one
        pipes = [
            asyncio.ensure_future(self._pipe(context, first.context, counts, 0)),
            asyncio.ensure_future(self._pipe(first.context, context, counts, 1)),
        ]
        peer_gone = asyncio.ensure_future(first.gone.wait())
        status = "OK"
        try:
            running = set(pipes) | {peer_gone}
            while any(not pipe.done() for pipe in pipes):
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                if peer_gone in done:
                    raise PeerGone()
                for task in done:
                    task.result()  # a failed direction ends both (errgroup semantics)
        except PeerGone:
            status = "CANCELLED"
            await context.abort(grpc.StatusCode.CANCELLED, "the other side of the stream went away")
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as error:  # noqa: BLE001 - any failure of a direction ends the pair
            status = "ABORTED"
            await context.abort(grpc.StatusCode.ABORTED, f"forwarding failed: {error}")
        finally:
            for task in (*pipes, peer_gone):
                task.cancel()
            first.released.set()
            log(f"stream sub={sub} end status={status} bytes-to-first={counts[0]} bytes-to-second={counts[1]}")

    @staticmethod
    async def _pipe(source, sink, counts: list[int], index: int) -> None:
        """One direction (Go: ``router_support.go:pipe``): until the source's EOF."""
        while True:
            message = await source.read()
            if message is grpc.aio.EOF:
                return
            counts[index] += len(message.payload)
            await sink.write(router_pb2.StreamResponse(payload=message.payload, frame_type=message.frame_type))


async def serve(listen: str, cert: bytes, key: bytes, router_key: bytes, stop: asyncio.Event,
                max_connection_age: float | None = None) -> None:
    options = [("grpc.so_reuseport", 0), *KEEPALIVE_ENFORCEMENT]
    if max_connection_age is not None:
        # As a Go server with keepalive.ServerParameters{MaxConnectionAge}: GOAWAY once a
        # connection is that old; its calls may go on for a long grace time.
        options += [("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
                    ("grpc.max_connection_age_grace_ms", 600_000)]
    server = grpc.aio.server(options=options)
    router_pb2_grpc.add_RouterServiceServicer_to_server(RouterService(router_key), server)
    port = server.add_secure_port(listen, grpc.ssl_server_credentials([(key, cert)]))
    if port == 0:
        raise SystemExit(f"cannot listen on {listen}")
    await server.start()
    log(f"ready {listen.rsplit(':', 1)[0]}:{port}")
    await stop.wait()
    await server.stop(grace=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True, help="the shared router key (ROUTER_KEY)")
    parser.add_argument("--max-connection-age", type=float, metavar="SECONDS",
                        help="send GOAWAY on connections this old (calls may go on for 10 minutes)")
    args = parser.parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.listen, args.tls_cert.read_bytes(), args.tls_key.read_bytes(),
                    args.key_file.read_bytes().strip(), stop, args.max_connection_age)

    asyncio.run(run())
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
