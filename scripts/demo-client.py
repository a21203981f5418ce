#!/usr/bin/env python3
"""One round trip through jmp-bridge with jumpstarter's own router-stream client.

Uses ``jumpstarter.common.streams.connect_router_stream`` — what a jumpstarter client or exporter
does with a router endpoint and token — to send a line over TLS to jmp-bridge, which relays it to
its default route (the demo echo service). Prints what it sent and what came back; exits 1 on a
mismatch and 2 on an error.

    .venv/bin/python scripts/demo-client.py --endpoint 127.0.0.1:8083 --ca tls.crt [--message TEXT]
"""

import argparse
import base64
import logging
import sys

import anyio
from anyio import EndOfStream, fail_after
from jumpstarter.common.streams import connect_router_stream
from jumpstarter.config.tls import TLSConfigV1Alpha1
from jumpstarter.streams.common import create_memory_stream


async def round_trip(endpoint: str, ca_pem: bytes, token: str, message: bytes, timeout: float) -> bytes:
    tls_config = TLSConfigV1Alpha1(ca=base64.b64encode(ca_pem).decode())
    local, remote = create_memory_stream()
    received = bytearray()
    with fail_after(timeout):
        async with connect_router_stream(endpoint, token, remote, tls_config, {}):
            await local.send(message)
            await local.send_eof()  # half-close: the echo service sees EOF, echoes, and closes
            while True:
                try:
                    received += await local.receive()
                except EndOfStream:
                    break
    return bytes(received)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="HOST:PORT of jmp-bridge's TLS listener")
    parser.add_argument("--ca", required=True, help="PEM file of the CA (here: the self-signed cert)")
    parser.add_argument("--token", default="demo-token", help="bearer token (default: %(default)s)")
    parser.add_argument("--message", default="hello from jumpstarter through jmp-bridge")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    # jumpstarter logs a bare "stream copy interrupted" warning when the RPC fails; the error
    # below says more.
    logging.getLogger("jumpstarter").setLevel(logging.ERROR)
    with open(args.ca, "rb") as f:
        ca_pem = f.read()
    message = args.message.encode()
    print(f"sent:     {args.message!r} ({len(message)} bytes)", flush=True)
    try:
        received = anyio.run(round_trip, args.endpoint, ca_pem, args.token, message, args.timeout, backend="asyncio")
    except TimeoutError:
        print(f"demo-client: error: no complete reply from {args.endpoint} within {args.timeout:g} s", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - report any failure in one line
        print(f"demo-client: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(f"received: {received.decode(errors='replace')!r} ({len(received)} bytes, back through jmp-bridge)")
    if received != message:
        print(f"demo-client: mismatch: sent {len(message)} bytes, received {len(received)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
