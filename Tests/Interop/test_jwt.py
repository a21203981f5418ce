"""Router-style JWT bearer tokens through jmp-bridge with jumpstarter 0.9.0's own client.

The tokens are minted exactly as Jumpstarter's controller mints router tokens (HS256 over the
router's shared secret; iss https://jumpstarter.dev/stream, aud [https://jumpstarter.dev/router],
sub the stream id, exp +30 min, nbf and iat now, jti), with only the standard library, and sent by
``connect_router_stream`` as ``authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import grpc
import pytest
from anyio import fail_after
from jumpstarter.config.tls import TLSConfigV1Alpha1

from conftest import echo
from test_router_stream import TIMEOUT, connect_router_stream_echo, credentials, field, start_call

ROUTER_KEY = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # openssl rand -hex 32


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def router_token(key: bytes = ROUTER_KEY, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://jumpstarter.dev/stream",
        "sub": str(uuid.uuid4()),
        "aud": ["https://jumpstarter.dev/router"],
        "exp": now + 1800,
        "nbf": now,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **overrides,
    }
    signing_input = f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def jwt_config(tls, sockdir, routes: dict) -> str:
    key_file = sockdir / "router.key"
    key_file.write_bytes(ROUTER_KEY + b"\n")
    lines = [
        "jwt:",
        f"  key-file: {key_file}",
        "listen:",
        "  - address: tcp:127.0.0.1:0",
        f"    tls: {{cert: {tls.cert}, key: {tls.key}}}",
        "routes:",
        *[f"  {name}: {{unix: {path}}}" for name, path in routes.items()],
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("how", ["config", "flag"])
async def test_router_token_passes_with_connect_router_stream(start_bridge, unix_server, tls, sockdir, how):
    """A stock jumpstarter client with a router-minted token reaches the route (key from a
    ``jwt:`` section, or from ``--jwt-key-file``)."""
    target = unix_server("echo.sock", echo)
    if how == "config":
        bridge = start_bridge(config=jwt_config(tls, sockdir, {"echo": target.path}))
    else:
        jwt_config(tls, sockdir, {})  # writes the key file
        bridge = start_bridge({"echo": target.path}, extra_args=["--jwt-key-file", str(sockdir / "router.key")])
    token = router_token()
    message = b"authenticated hello\n"

    with fail_after(TIMEOUT):
        await connect_router_stream_echo(bridge.endpoint, token, TLSConfigV1Alpha1(ca=tls.ca_base64), message)

    [line] = bridge.stream_lines(count=1)
    assert field(line, "status") == "OK"
    assert token not in bridge.log()


async def test_wrong_token_is_unauthenticated(start_bridge, unix_server, tls, sockdir):
    """A token signed with another key, or an expired one, is refused before the route is
    touched, and the log never shows it."""
    target = unix_server("echo.sock", echo)
    bridge = start_bridge(config=jwt_config(tls, sockdir, {"echo": target.path}))
    wrong = router_token(key=b"another-secret-another-secret-another-secret")
    expired = router_token(exp=int(time.time()) - 3600)

    with fail_after(TIMEOUT):
        for token in (wrong, expired):
            opts = [("grpc.use_local_subchannel_pool", 1)]
            async with grpc.aio.secure_channel(bridge.endpoint, credentials(tls, token), options=opts) as channel:
                call = start_call(channel)
                assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
                assert token.split(".")[2] not in await call.details()

    lines = bridge.stream_lines(count=2)
    assert [field(line, "status") for line in lines] == ["UNAUTHENTICATED", "UNAUTHENTICATED"]
    assert target.connections == []
    for token in (wrong, expired):
        assert token.split(".")[2] not in bridge.log()
