#!/usr/bin/env python3
"""A TCP relay that adds network delay, for the gateway benchmark's stream set-up rows on a kernel
without `sch_netem`.

    delay_relay.py --rtt-ms 20 UPSTREAM [UPSTREAM ...]

For each UPSTREAM (HOST:PORT) it listens on 127.0.0.1 and prints `relay UPSTREAM 127.0.0.1:PORT`,
then `ready`. Each connection it accepts is relayed to a fresh connection to its UPSTREAM, with
the delays a path of that round-trip time would add (d = half the round trip):

* bytes the upstream sends reach the client d after they were sent;
* bytes the client sends reach the upstream d after they were sent, but never before 3d after
  the connection was accepted: on a real path the client's connect() returns only after the SYN
  and SYN-ACK (2d), so its first bytes leave no earlier than that. The relay's own accept is
  instant, so it holds them instead, and a fresh connection costs its TCP handshake's round trip
  as it would behind netem.

Order is kept (the delivery times only grow) and half-close is passed on at its delayed time.
Made for the set-up measurement's few small messages, but bounded for any load: each direction
holds at most HELD_LIMIT bytes not yet delivered and stops reading until it holds less (what a
path of that delay can carry is its window, not more). Stops on end of stdin or SIGTERM.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys

# Bytes one direction holds at most before it stops reading (backpressure to the sender).
HELD_LIMIT = 4 * 1024 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, not_before: float) -> None:
    """Copies reader to writer, each chunk delivered at max(arrival, not_before) + delay, with at
    most HELD_LIMIT bytes held."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    held = 0
    room = asyncio.Event()
    room.set()

    async def deliver():
        nonlocal held
        while True:
            at, chunk = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
            held -= len(chunk)
            if held < HELD_LIMIT:
                room.set()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            await room.wait()
            chunk = await reader.read(65536)
            queue.put_nowait((max(loop.time(), not_before) + delay, chunk or None))
            if not chunk:
                break
            held += len(chunk)
            if held >= HELD_LIMIT:
                room.clear()
        await sender
    finally:
        sender.cancel()


async def serve(upstream: str, delay: float) -> asyncio.AbstractServer:
    host, port = upstream.rsplit(":", 1)

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter):
        accepted = asyncio.get_running_loop().time()
        try:
            u_reader, u_writer = await asyncio.open_connection(host, int(port))
        except OSError as e:
            print(f"connect {upstream} failed: {e}", file=sys.stderr, flush=True)
            c_writer.close()
            return
        for w in (c_writer, u_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(pipe(c_reader, u_writer, delay, accepted + 2 * delay),
                                 pipe(u_reader, c_writer, delay, 0.0))
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (c_writer, u_writer):
                w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rtt-ms", type=float, required=True, help="round trip to add (half each way)")
    p.add_argument("upstreams", nargs="+", metavar="UPSTREAM")
    args = p.parse_args()
    delay = args.rtt_ms / 2000.0
    servers = []
    for upstream in args.upstreams:
        server = await serve(upstream, delay)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        print(f"relay {upstream} 127.0.0.1:{port}", flush=True)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(0, lambda: os.read(0, 4096) or done.set())
    await done.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
