"""An echo service on a Unix socket, served by asyncio with a chosen listen backlog: a busy
exporter (jumpstarter's exporters are asyncio servers too).

``python asyncio_echo.py PATH BACKLOG [ACCEPT_DELAY_MS]`` prints ``ready`` once listening and
serves until it is killed. Each connection is echoed until EOF, then half-closed, so EOF
travels back. ``ACCEPT_DELAY_MS`` makes it take that long over each accept, like an exporter
busy with other work, so that a burst of connects fills its backlog whatever the machine.
"""

from __future__ import annotations

import asyncio
import socket
import sys


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(path: str, backlog: int, accept_delay: float) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(backlog)
    listener.setblocking(False)
    print("ready", flush=True)
    tasks = set()
    while True:
        conn, _ = await loop.sock_accept(listener)
        reader, writer = await asyncio.open_unix_connection(sock=conn)
        task = asyncio.create_task(echo(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if accept_delay:
            await asyncio.sleep(accept_delay)


if __name__ == "__main__":
    delay_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), delay_ms / 1000))
