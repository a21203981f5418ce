"""A gRPC server over HTTP/2 that takes one call per connection, as a proxy that drains its
connections does (nginx's ``keepalive_requests``, an ingress being reloaded): when the first
stream of a connection arrives it sends GOAWAY naming that stream as the last one, serves that
call, and leaves every later stream on the connection unprocessed (RFC 9113, 6.8: a client may
send those again on a new connection).

The call it serves is ``RouterService/Stream`` as an echo: each ``StreamRequest`` comes back as a
``StreamResponse`` with the same payload and frame type, and the call ends with OK once the
client has ended its side. Built on the ``h2`` library (python-hyper), with TLS (ALPN h2).

Run it as a process (``test_gateway.py`` does)::

    python one_call_server.py --listen 127.0.0.1:0 --tls-cert C --tls-key K

It prints ``ready 127.0.0.1:PORT`` once serving, then ``call stream=N token=T`` for each call it
takes (``T``: the bearer token), ``unprocessed stream=N`` for each stream above its GOAWAY and
``window-update stream=N increment=K`` for each stream-level WINDOW_UPDATE on the served stream;
and, when the connection closes, ``closed stream=N frames-after-end=K``: the frames the
client sent on the served stream after it had ended both ways (RFC 9113, 5.1: only PRIORITY
may follow); SIGTERM stops it (exit 0).

With ``--abort-after N`` it plays a server that dies under a call instead (a crashing router, an
ingress cut off): once it has echoed N messages of the call, it sends GOAWAY with INTERNAL_ERROR
and the debug text ``test abort``, closes the connection and prints ``aborted stream=N``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import struct

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hyperframe.frame import GoAwayFrame
from jumpstarter_protocol import router_pb2


def log(line: str) -> None:
    print(line, flush=True)


class OneCallConnection(asyncio.Protocol):
    """One HTTP/2 connection: its first stream is served, the rest are not processed."""

    #: Echoed messages after which the connection is aborted (``--abort-after``); None: never.
    abort_after: int | None = None

    def connection_made(self, transport) -> None:
        self.echoed = 0
        self.transport = transport
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.served: int | None = None
        self.request = bytearray()
        #: The served stream's ends: the client's END_STREAM seen, the trailers sent.
        self.client_ended = self.trailers_sent = False
        #: What the client sent, parsed into frames alongside h2 (past the 24-byte preface).
        self.raw = bytearray()
        self.preface_left = 24
        self.frames_after_end = 0
        self.flush()

    def connection_lost(self, exc) -> None:
        if self.served is not None:
            log(f"closed stream={self.served} frames-after-end={self.frames_after_end}")

    def count_frames_after_end(self, data: bytes) -> None:
        """Counts the client's frames on the served stream that come after its end both ways."""
        skip = min(self.preface_left, len(data))
        self.preface_left -= skip
        self.raw += data[skip:]
        while len(self.raw) >= 9:
            length = int.from_bytes(self.raw[:3], "big")
            if len(self.raw) < 9 + length:
                return
            kind, stream_id = self.raw[3], int.from_bytes(self.raw[5:9], "big") & 0x7FFFFFFF
            del self.raw[:9 + length]
            if stream_id == self.served and self.client_ended and self.trailers_sent and kind != 2:  # PRIORITY
                self.frames_after_end += 1

    def flush(self) -> None:
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self.count_frames_after_end(data)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.request_received(event)
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_id == self.served:
                    self.request += event.data
                    self.echo()
                    if self.transport.is_closing():
                        return
            elif isinstance(event, h2.events.WindowUpdated) and event.stream_id == self.served:
                log(f"window-update stream={event.stream_id} increment={event.delta}")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == self.served:
                self.h2.send_headers(self.served, [("grpc-status", "0")], end_stream=True)
                self.client_ended = self.trailers_sent = True
        self.flush()

    def request_received(self, event: h2.events.RequestReceived) -> None:
        if self.served is not None:
            log(f"unprocessed stream={event.stream_id}")
            return
        self.served = event.stream_id
        authorization = dict(event.headers).get("authorization", "")
        log(f"call stream={event.stream_id} token={authorization.removeprefix('Bearer ')}")
        # The GOAWAY goes out past h2's state machine, which would send nothing more after its
        # own: a draining server goes on serving the streams up to the last one it names.
        self.flush()
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = event.stream_id
        self.transport.write(goaway.serialize())
        self.h2.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc")])

    def echo(self) -> None:
        """Answers every whole gRPC message received so far."""
        while len(self.request) >= 5:
            length = struct.unpack(">I", self.request[1:5])[0]
            if len(self.request) < 5 + length:
                return
            message = router_pb2.StreamRequest.FromString(bytes(self.request[5:5 + length]))
            del self.request[:5 + length]
            reply = router_pb2.StreamResponse(payload=message.payload, frame_type=message.frame_type)
            body = reply.SerializeToString()
            self.h2.send_data(self.served, b"\0" + struct.pack(">I", len(body)) + body)
            self.echoed += 1
            if self.abort_after is not None and self.echoed >= self.abort_after:
                self.abort()
                return

    def abort(self) -> None:
        """GOAWAY(INTERNAL_ERROR) past h2's state machine, after what was echoed, then the close."""
        self.flush()
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = self.served
        goaway.error_code = 2
        goaway.additional_data = b"test abort"
        self.transport.write(goaway.serialize())
        self.transport.close()
        log(f"aborted stream={self.served}")
        self.abort_after = None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--abort-after", type=int, metavar="N")
    args = parser.parse_args()
    OneCallConnection.abort_after = args.abort_after
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    context.set_alpn_protocols(["h2"])
    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.get_running_loop().create_server(OneCallConnection, host, int(port), ssl=context)
    log(f"ready {host}:{server.sockets[0].getsockname()[1]}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
