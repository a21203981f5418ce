#!/usr/bin/env python3
"""The exporter's side of the gateway benchmark: a Listen call and, optionally, the stock
exporter's router connection for each ListenResponse. Run with .venv's Python (jumpstarter 0.9.0).

    gateway_exporter.py --controller HOST:PORT --lease NAME [--ca PEM] [--connect]

Opens `ControllerService/Listen` (lease NAME) on HOST:PORT — plaintext HTTP/2 without --ca,
TLS trusting PEM with it — and prints for each `ListenResponse` `response TOKEN ENDPOINT NS` (NS: CLOCK_MONOTONIC in nanoseconds on arrival).

With --connect it also does, for each response, what jumpstarter 0.9.0's exporter does
(`Exporter._handle_client_conn`): connect to the lease's session socket (here a Unix socket
server in this process) with anyio's `connect_unix`, then `connect_router_stream(endpoint,
token, stream, tls, {})` — a fresh grpc.aio channel with TLS per stream, the token as call
credentials — and forward. The session socket's server prints `first-byte TOKEN NS` when the
first byte from the router (the client's) arrives, and closes, which ends the router stream.
Stops on SIGTERM or when the Listen call ends.
"""

import argparse
import asyncio
import base64
import os
import signal
import sys
import tempfile
import time

import anyio
import grpc
from jumpstarter.common.streams import connect_router_stream
from jumpstarter.config.tls import TLSConfigV1Alpha1
from jumpstarter_protocol.jumpstarter.v1 import jumpstarter_pb2, jumpstarter_pb2_grpc


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--controller", required=True)
    p.add_argument("--lease", default="bench")
    p.add_argument("--ca", default="")
    p.add_argument("--connect", action="store_true")
    args = p.parse_args()

    tls = None
    if args.ca:
        with open(args.ca, "rb") as f:
            pem = f.read()
        tls = TLSConfigV1Alpha1(ca=base64.b64encode(pem).decode())
        channel = grpc.aio.secure_channel(args.controller, grpc.ssl_channel_credentials(pem))
    else:
        channel = grpc.aio.insecure_channel(args.controller)

    work = tempfile.mkdtemp(prefix="jmp-bench-exporter.")
    session_path = os.path.join(work, "session.sock")
    current = {"token": None}

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        first = await reader.read(1)
        t = time.monotonic_ns()
        say(f"first-byte {current['token']} {t}" if first else f"session-eof {current['token']}")
        writer.close()

    server = await asyncio.start_unix_server(session, session_path)

    async def handle(endpoint: str, token: str):
        try:
            async with await anyio.connect_unix(session_path) as stream:
                async with connect_router_stream(endpoint, token, stream, tls, {}):
                    pass
        except Exception as e:  # noqa: BLE001 - reported to the benchmark, which flags it
            say(f"error {token} {type(e).__name__}: {str(e)[:200].replace(chr(10), ' ')}")

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    stub = jumpstarter_pb2_grpc.ControllerServiceStub(channel)
    tasks = set()
    try:
        call = stub.Listen(jumpstarter_pb2.ListenRequest(lease_name=args.lease))
        async for resp in call:
            t = time.monotonic_ns()
            say(f"response {resp.router_token} {resp.router_endpoint} {t}")
            if args.connect:
                current["token"] = resp.router_token
                tasks.add(asyncio.create_task(handle(resp.router_endpoint, resp.router_token)))
        say("listen-ended")
    except asyncio.CancelledError:
        pass
    except grpc.aio.AioRpcError as e:
        say(f"listen-error {e.code().name} {e.details()}")
    finally:
        for t in tasks:
            t.cancel()
        server.close()
        await channel.close()
        try:
            os.unlink(session_path)
            os.rmdir(work)
        except OSError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
