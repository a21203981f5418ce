"""A probe service on the test controller's server, for what the gateway must pass unchanged.

``/jmpbridge.test.Probe/Unary``, ``/jmpbridge.test.Probe/Echo`` and ``/jmpbridge.test.Probe/Flood``
(streaming) are methods no Jumpstarter release has: the gateway forwards them like any other
(later exporters add RPCs). Flood answers the first request message with ``x-count`` copies of
it (default 16) and ends without waiting for the client's end, so that grpc core follows its
trailers with RST_STREAM(NO_ERROR), as gRPC servers do for a client still sending. All answer
with:

* initial metadata: every request metadata entry whose key starts with ``x-``, in order;
* the messages: Unary returns the request bytes reversed; Echo sends back each message;
* trailing metadata ``x-trailer: trailer-value`` and ``x-trailer-bin: <the first 64 bytes of the first request>``;
* the status named by the request's ``x-code`` metadata (an int, default 0) with the details in
  ``x-details-bin`` (UTF-8; default empty).

Messages are raw bytes (no protobuf), so the test sees exactly what crossed.
"""

from __future__ import annotations

import grpc

SERVICE = "jmpbridge.test.Probe"
UNARY = f"/{SERVICE}/Unary"
ECHO = f"/{SERVICE}/Echo"
FLOOD = f"/{SERVICE}/Flood"


def _finish(context, metadata: dict[str, str | bytes], first: bytes) -> None:
    context.set_trailing_metadata((("x-trailer", "trailer-value"), ("x-trailer-bin", first[:64])))
    code = int(metadata.get("x-code", "0"))
    if code:
        context.set_code(grpc.StatusCode(next(c.value for c in grpc.StatusCode if c.value[0] == code)))
        context.set_details(metadata.get("x-details-bin", b"").decode())


async def _unary(request: bytes, context) -> bytes:
    metadata = list(context.invocation_metadata())
    await context.send_initial_metadata(tuple((k, v) for k, v in metadata if k.startswith("x-")))
    _finish(context, dict(metadata), request)
    return request[::-1]


async def _echo(requests, context):
    metadata = list(context.invocation_metadata())
    await context.send_initial_metadata(tuple((k, v) for k, v in metadata if k.startswith("x-")))
    first = None
    async for message in requests:
        first = message if first is None else first
        yield message
    _finish(context, dict(metadata), first or b"")


async def _flood(requests, context):
    metadata = list(context.invocation_metadata())
    await context.send_initial_metadata(tuple((k, v) for k, v in metadata if k.startswith("x-")))
    first = b""
    async for first in requests:
        break
    for _ in range(int(dict(metadata).get("x-count", "16"))):
        yield first
    _finish(context, dict(metadata), first)


def handler() -> grpc.GenericRpcHandler:
    """The probe's generic handler, for ``server.add_generic_rpc_handlers``."""
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Echo": grpc.stream_stream_rpc_method_handler(_echo),
        "Flood": grpc.stream_stream_rpc_method_handler(_flood),
    })
