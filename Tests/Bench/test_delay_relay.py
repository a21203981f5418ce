"""bench/delay_relay.py, the user-space stand-in for netem in the gateway's set-up benchmark: it
delivers every byte, in order and no sooner than the delay, and a receiver that stops reading
stops the sender instead of filling the relay's memory."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELAY = os.path.join(REPO, "bench", "delay_relay.py")


class Relay:
    """delay_relay.py in front of a listening socket of the test's."""

    def __init__(self, rtt_ms: float):
        self.upstream = socket.create_server(("127.0.0.1", 0))
        port = self.upstream.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, RELAY, "--rtt-ms", str(rtt_ms), f"127.0.0.1:{port}"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        assert line[:2] == ["relay", f"127.0.0.1:{port}"], line
        host, relay_port = line[2].rsplit(":", 1)
        self.address = (host, int(relay_port))
        assert self.proc.stdout.readline().strip() == "ready"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.upstream.close()


def test_bytes_arrive_whole_in_order_and_no_sooner_than_the_delay():
    relay = Relay(rtt_ms=40)
    try:
        payload = os.urandom(8 * 1024 * 1024)
        client = socket.create_connection(relay.address)
        server, _ = relay.upstream.accept()
        sent_at = time.monotonic()
        writer = threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR)))
        writer.start()
        received, first_at = hashlib.sha256(), None
        while chunk := server.recv(1 << 20):
            first_at = first_at or time.monotonic()
            received.update(chunk)
        writer.join()
        assert received.hexdigest() == hashlib.sha256(payload).hexdigest()
        # A fresh connection's first bytes wait for the handshake's round trip too: 3 × 20 ms.
        assert first_at - sent_at >= 0.06
        server.close()
        client.close()
    finally:
        relay.close()


def test_a_receiver_that_stops_reading_stops_the_sender():
    relay = Relay(rtt_ms=2)
    try:
        client = socket.create_connection(relay.address)
        server, _ = relay.upstream.accept()  # never read
        baseline = relay.rss_kib()
        client.setblocking(False)
        chunk = b"x" * (1 << 20)
        offered, accepted = 160 * len(chunk), 0
        while accepted < offered:
            # Writable again within 2 s, or the relay has stopped taking bytes: the backpressure.
            _, writable, _ = select.select([], [client], [], 2.0)
            if not writable:
                break
            try:
                accepted += client.send(chunk)
            except BlockingIOError:
                continue
        # What the relay holds (4 MiB) and four socket buffers on loopback (a few MiB each at
        # most), never the 160 MiB offered.
        assert accepted < 48 * 1024 * 1024, f"the relay took {accepted / 2**20:.0f} MiB from a sender nobody reads"
        assert relay.rss_kib() - baseline < 32 * 1024
        server.close()
        client.close()
    finally:
        relay.close()


def test_a_receiver_that_goes_away_ends_the_stalled_sender():
    """With 4 MiB held for a receiver that stopped reading, the receiver closes: the relay ends
    the sender's connection too (its other direction sees the reset), instead of waiting for room
    that never comes."""
    relay = Relay(rtt_ms=2)
    try:
        client = socket.create_connection(relay.address)
        server, _ = relay.upstream.accept()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # close with RST
        client.setblocking(False)
        chunk = b"x" * (1 << 20)
        while select.select([], [client], [], 2.0)[1]:  # until the relay stops taking bytes
            try:
                client.send(chunk)
            except BlockingIOError:
                continue
        server.close()
        client.setblocking(True)
        client.settimeout(30)
        ended = False
        try:
            while client.recv(65536):
                pass
            ended = True
        except ConnectionResetError:
            ended = True
        assert ended
        client.close()
    finally:
        relay.close()
