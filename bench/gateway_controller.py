#!/usr/bin/env python3
"""A stub Jumpstarter controller (and, optionally, a stub router) for the gateway benchmark.

Run with .venv's Python (grpcio and jumpstarter_protocol); see bench/README.md, "Gateway".

    gateway_controller.py --listen 127.0.0.1:0 [--cert C --key K] [--router-listen 127.0.0.1:0]

Controller: `ControllerService/Listen` streams a `ListenResponse` each time a line
`send LEASE ENDPOINT` arrives on stdin (to the Listen calls open for that lease), with
`router_endpoint=ENDPOINT` and a token never handed out before; for each it prints
`sent TOKEN NS`, NS being CLOCK_MONOTONIC in nanoseconds just before the response is handed to
grpc (the clock is system-wide, so other processes' timestamps compare). A Listen call prints
`listen LEASE` when it starts. Other ControllerService methods are not implemented.

Router (with --router-listen): `RouterService/Stream` writes one 1-byte DATA frame at once, as
the real router does when the client's stream is already waiting and the client has written
(the stream-set-up measurement's "first client byte"), then reads until the exporter ends; it
prints `stream PEER TOKEN NS` when a call arrives (PEER is the TCP connection it came on, so
the benchmark can count new connections per stream).

Without --cert/--key both serve plaintext HTTP/2 (h2c). Prints `controller HOST:PORT`,
`router HOST:PORT` and then `ready`. Stops on end of stdin or SIGTERM.
"""

import argparse
import asyncio
import itertools
import os
import signal
import sys
import time

import grpc
from jumpstarter_protocol.jumpstarter.v1 import (
    jumpstarter_pb2,
    jumpstarter_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Controller(jumpstarter_pb2_grpc.ControllerServiceServicer):
    def __init__(self):
        self.queues: dict[str, set[asyncio.Queue]] = {}
        self.serial = itertools.count(1)
        self.nonce = os.urandom(4).hex()

    def send(self, lease: str, endpoint: str) -> None:
        for q in self.queues.get(lease, ()):
            q.put_nowait(endpoint)

    async def Listen(self, request, context):
        q: asyncio.Queue = asyncio.Queue()
        self.queues.setdefault(request.lease_name, set()).add(q)
        say(f"listen {request.lease_name}")
        try:
            while True:
                endpoint = await q.get()
                token = f"bench-{self.nonce}-{next(self.serial)}"
                say(f"sent {token} {time.monotonic_ns()}")
                yield jumpstarter_pb2.ListenResponse(router_endpoint=endpoint, router_token=token)
        finally:
            self.queues[request.lease_name].discard(q)


class Router(router_pb2_grpc.RouterServiceServicer):
    async def Stream(self, request_iterator, context):
        t = time.monotonic_ns()
        token = dict(context.invocation_metadata()).get("authorization", "").removeprefix("Bearer ")
        say(f"stream {context.peer()} {token} {t}")
        await context.write(router_pb2.StreamResponse(payload=b"\x01"))
        async for _ in request_iterator:
            pass


def add_port(server: grpc.aio.Server, addr: str, creds) -> int:
    return server.add_secure_port(addr, creds) if creds else server.add_insecure_port(addr)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--router-listen", default="")
    p.add_argument("--cert", default="")
    p.add_argument("--key", default="")
    args = p.parse_args()
    creds = None
    if args.cert:
        with open(args.cert, "rb") as c, open(args.key, "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    controller = Controller()
    server = grpc.aio.server()
    jumpstarter_pb2_grpc.add_ControllerServiceServicer_to_server(controller, server)
    port = add_port(server, args.listen, creds)
    router_server = None
    if args.router_listen:
        router_server = grpc.aio.server()
        router_pb2_grpc.add_RouterServiceServicer_to_server(Router(), router_server)
        router_port = add_port(router_server, args.router_listen, creds)
        await router_server.start()
    await server.start()
    say(f"controller {args.listen.rsplit(':', 1)[0]}:{port}")
    if router_server:
        say(f"router {args.router_listen.rsplit(':', 1)[0]}:{router_port}")
    say("ready")

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands():
        while line := await reader.readline():
            words = line.decode().split()
            if len(words) == 3 and words[0] == "send":
                controller.send(words[1], words[2])
        done.set()

    task = asyncio.create_task(commands())
    await done.wait()
    task.cancel()
    await server.stop(0)
    if router_server:
        await router_server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
