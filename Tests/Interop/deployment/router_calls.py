"""Moving bytes through a ``RouterService/Stream`` call (grpcio aio) as a relay's two ends do:
the interop tests' gateway churn and the soak's gateway relays use the same two helpers."""

from __future__ import annotations

from jumpstarter_protocol import router_pb2

#: The payload of each message written: the size Jumpstarter's own streams use.
CHUNK = 64 * 1024


async def read_payloads(call) -> bytes:
    """Every payload of ``call`` until its end, joined. The call's status is raised by grpcio."""
    import grpc

    received = bytearray()
    while (message := await call.read()) != grpc.aio.EOF:
        received += message.payload
    return bytes(received)


async def write_payloads(call, data: bytes, cancel_at: int | None = None) -> None:
    """Writes ``data`` in ``CHUNK`` messages and half-closes; or, with ``cancel_at``, cancels the
    call at the first message from that offset on."""
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK):
        if cancel_at is not None and offset >= cancel_at:
            break
        await call.write(router_pb2.StreamRequest(payload=bytes(view[offset:offset + CHUNK])))
    if cancel_at is not None:
        call.cancel()
    else:
        await call.done_writing()
