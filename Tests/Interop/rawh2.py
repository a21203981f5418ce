"""Hand-made HTTP/2 frames, for the fault tests that need what no well-behaved client sends: a
partial preface, an oversized header block, a gRPC message with the compressed flag set but no
``grpc-encoding``, garbage after the preface.

Only what those tests need: frames are built byte by byte, header blocks use HPACK literals
without indexing (no Huffman coding), and received frames are split but not decoded.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def _hpack_int(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def header_block(headers: list[tuple[str, str | bytes]]) -> bytes:
    """HPACK literals without indexing, new names, no Huffman coding."""
    block = bytearray()
    for name, value in headers:
        raw_name = name.encode()
        raw_value = value if isinstance(value, bytes) else value.encode()
        block += b"\x00" + _hpack_int(len(raw_name), 7) + raw_name + _hpack_int(len(raw_value), 7) + raw_value
    return bytes(block)


def grpc_request_headers(extra: list[tuple[str, str | bytes]] = ()) -> list[tuple[str, str | bytes]]:
    return [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/jumpstarter.v1.RouterService/Stream"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


def headers(stream_id: int, fields: list[tuple[str, str | bytes]], *, end_stream: bool = False) -> bytes:
    flags = END_HEADERS | (END_STREAM if end_stream else 0)
    return frame(HEADERS, flags, stream_id, header_block(fields))


def data(stream_id: int, payload: bytes, *, end_stream: bool = False) -> bytes:
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def grpc_message(payload: bytes, *, compressed: bool = False) -> bytes:
    """The gRPC length-prefixed message: flag byte, 4-byte length, payload."""
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(payload)) + payload


@dataclass
class Frame:
    kind: int
    flags: int
    stream_id: int
    payload: bytes


def tls_connect(port: int, cert_pem: bytes, *, alpn: list[str] | None = None, timeout: float = 30) -> ssl.SSLSocket:
    context = ssl.create_default_context(cadata=cert_pem.decode())
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


class Connection:
    """An HTTP/2 connection over TLS (ALPN h2) that says only what a test tells it to."""

    def __init__(self, port: int, cert_pem: bytes, *, timeout: float = 30):
        self.sock = tls_connect(port, cert_pem, alpn=["h2"], timeout=timeout)
        self._buffer = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def start(self) -> None:
        """Preface and an empty SETTINGS frame; the server's SETTINGS is acknowledged by
        :meth:`read_frame` as it arrives."""
        self.send(PREFACE + frame(SETTINGS, 0, 0))

    def read_frame(self) -> Frame | None:
        """The next frame, or None once the server has closed the connection."""
        while True:
            if len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if len(self._buffer) >= 9 + length:
                    kind, flags = self._buffer[3], self._buffer[4]
                    stream_id = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
                    payload = self._buffer[9:9 + length]
                    self._buffer = self._buffer[9 + length:]
                    if kind == SETTINGS and not flags & ACK:
                        self.send(frame(SETTINGS, ACK, 0))
                    return Frame(kind, flags, stream_id, payload)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk

    def frames_until(self, predicate, timeout: float = 30) -> list[Frame]:
        """Frames read until one satisfies ``predicate`` (it is the last) or the connection
        closes; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        frames = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            received = self.read_frame()
            if received is None:
                return frames
            frames.append(received)
            if predicate(received):
                return frames
        raise AssertionError(f"no matching frame within {timeout}s; got {frames}")

    def close(self) -> None:
        self.sock.close()
