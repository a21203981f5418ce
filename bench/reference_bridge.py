"""Reference bridge for the jmp-bridge benchmark, made from jumpstarter 0.9.0's own classes.

A grpc.aio server implementing jumpstarter.v1.RouterService/Stream the way jumpstarter's exporter
side bridges a routed stream (jumpstarter.exporter.Session.Stream, jumpstarter.common.streams
connect_router_stream): RouterStream(context=context) glued to an anyio Unix-socket connection by
jumpstarter.streams.common.forward_stream. Every stream connects afresh to the same target as
jmp-bridge's route.

    python reference_bridge.py --listen 127.0.0.1:0 --route echo=/path/echo.sock [--route ...]

Like jmp-bridge, the `jmp-route` request metadata picks the route (absent: the first one).

Logs "listening address=tcp:HOST:PORT" and then "ready" on stderr.

The handler returns once both directions are done (forward_stream's task group ends when both
copies end); RouterStream.aclose() then sends GOAWAY again and aborts the call with ABORTED, as
jumpstarter does, so clients see status ABORTED rather than OK at the end of a clean stream.
"""

import argparse
import asyncio
import logging
import sys

import grpc
from anyio import connect_unix
from jumpstarter.streams.common import forward_stream
from jumpstarter.streams.router import RouterStream
from jumpstarter_protocol.jumpstarter.v1 import router_pb2_grpc


class Router(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, routes: dict[str, str]):
        self.routes = routes
        self.default = next(iter(routes))

    async def Stream(self, _request_iterator, context):
        metadata = dict(context.invocation_metadata() or ())
        target = self.routes.get(metadata.get("jmp-route", self.default))
        if target is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown route")
        async with await connect_unix(target) as stream:
            async with RouterStream(context=context) as remote:
                async with forward_stream(remote, stream):
                    pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (plaintext)")
    parser.add_argument("--route", action="append", required=True, help="NAME=UNIX_SOCKET_PATH")
    args = parser.parse_args()
    routes = dict(r.split("=", 1) for r in args.route)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServiceServicer_to_server(Router(routes), server)
    port = server.add_insecure_port(args.listen)
    await server.start()
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening address=tcp:{host}:{port}", file=sys.stderr, flush=True)
    print("ready", file=sys.stderr, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
