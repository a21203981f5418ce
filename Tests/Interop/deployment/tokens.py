"""Router tokens: HS256 JWTs as Jumpstarter's Go controller mints them and its router checks them.

* :func:`mint` mirrors ``controller/internal/service/controller_service.go:Dial``:
  ``jwt.RegisteredClaims{Issuer: "https://jumpstarter.dev/stream", Subject: <stream uuid>,
  Audience: ["https://jumpstarter.dev/router"], ExpiresAt: now+30min, NotBefore: now,
  IssuedAt: now, ID: <uuid>}`` signed HS256 with the router key (``$ROUTER_KEY``).
* :func:`verify` mirrors ``controller/internal/service/router_service.go:RouterService.authenticate``:
  ``jwt.ParseWithClaims(..., WithIssuer, WithAudience, WithIssuedAt, WithExpirationRequired,
  WithValidMethods(HS256, HS384, HS512))`` and returns the subject (the stream id).

Standard library only (the venv has no JWT package).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid

ISSUER = "https://jumpstarter.dev/stream"
AUDIENCE = "https://jumpstarter.dev/router"
#: How long a router token is valid, as in the Go controller's Dial.
TOKEN_LIFETIME = 30 * 60

_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


class InvalidToken(Exception):
    """The token is malformed, badly signed, or its claims do not hold."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidToken(f"bad base64url: {error}") from None


def mint(key: bytes, subject: str | None = None, *, alg: str = "HS256", **overrides) -> str:
    """A router token for stream ``subject`` (a fresh UUID if None); ``overrides`` replace claims
    (e.g. ``exp=0`` for an expired token, ``aud=[...]`` for a wrong audience)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject if subject is not None else str(uuid.uuid4()),
        "aud": [AUDIENCE],
        "exp": now + TOKEN_LIFETIME,
        "nbf": now,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **overrides,
    }
    header = {"alg": alg, "typ": "JWT"}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), _HASHES[alg]).digest()
    return f"{signing_input}.{_b64url(signature)}"


def verify(key: bytes, token: str, *, now: float | None = None) -> str:
    """Checks ``token`` as the Go router does and returns its subject; raises :class:`InvalidToken`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a JWS compact serialization")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except ValueError as error:
        raise InvalidToken(f"bad JSON: {error}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidToken("header and claims must be objects")
    digest = _HASHES.get(header.get("alg"))
    if digest is None:
        raise InvalidToken(f"signing method {header.get('alg')!r} is not allowed")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), digest).digest()
    if not hmac.compare_digest(expected, _b64url_decode(parts[2])):
        raise InvalidToken("signature mismatch")
    now = time.time() if now is None else now

    def number(name: str) -> float | None:
        value = claims.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidToken(f"claim {name} is not a number")
        return value

    exp = number("exp")
    if exp is None:
        raise InvalidToken("exp is required")
    if now >= exp:
        raise InvalidToken("token is expired")
    nbf = number("nbf")
    if nbf is not None and now < nbf:
        raise InvalidToken("token is not valid yet")
    iat = number("iat")
    if iat is not None and now < iat:
        raise InvalidToken("token used before issued")
    if claims.get("iss") != ISSUER:
        raise InvalidToken("wrong issuer")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or AUDIENCE not in audiences:
        raise InvalidToken("wrong audience")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("sub is required")
    return subject
