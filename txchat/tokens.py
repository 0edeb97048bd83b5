"""Signed identities: the JWT a WebSocket handshake carries when the server is started with
``--token-secret`` or ``--token-public-key`` (docs/integration.md).

PyJWT checks the signature, ``exp`` and ``nbf``; the algorithm is the one the key's type
allows and no other, so a token cannot choose ``none``, nor have a public key taken for an
HMAC secret.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from txchat import wire


class TokenRefused(Exception):
    """The handshake's token does not admit it: C{status} 401 (no valid token) or 403 (not
    for this room)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Identity:
    subject: str
    name: str  # the display name: the token's `name`, cleaned as a name= parameter is
    expires: float  # seconds since the Unix epoch: the token's `exp`, or infinity


# RFC 7518 §3.2: an HS256 key must be at least as long as the hash, 256 bits; a shorter one
# can be guessed offline from any token a client holds.
MIN_SECRET_BYTES = 32


class TokenChecker:
    def __init__(self, key: Any, algorithm: str) -> None:
        self._key = key
        self.algorithm = algorithm

    @classmethod
    def fromSecret(cls, secret: str) -> TokenChecker:
        key = secret.encode("utf-8")
        if not key:
            raise ValueError("the secret is empty")
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes (RFC 7518 section 3.2), this one has "
                f"{len(key)} (openssl rand -base64 32 makes one)"
            )
        return cls(key, "HS256")

    @classmethod
    def fromPublicKey(cls, pem: bytes) -> TokenChecker:
        """RS256 for an RSA key, ES256 for an EC key on P-256; anything else is refused."""
        try:
            key = load_pem_public_key(pem)
        except ValueError as e:
            raise ValueError(f"not a PEM public key ({e})") from None
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < 2048:
                raise ValueError(f"an RSA key of {key.key_size} bits is too weak: use 2048 or more")
            return cls(key, "RS256")
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise ValueError(f"an EC key must be on P-256 for ES256, not {key.curve.name}")
            return cls(key, "ES256")
        raise ValueError("the key must be RSA (RS256) or EC P-256 (ES256)")

    def check(self, token: str | None, room: str) -> Identity:
        if not token:
            raise TokenRefused(401, "a token is required")
        try:
            claims = jwt.decode(token, self._key, algorithms=[self.algorithm], options={"require": ["sub"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused(401, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused(401, "token not yet valid") from None
        except jwt.InvalidTokenError as e:
            raise TokenRefused(401, f"invalid token: {e}") from None
        name, rooms = claims.get("name", ""), claims.get("rooms")
        if not isinstance(name, str):
            raise TokenRefused(401, "invalid token: name must be a string")
        if rooms is not None and (not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms)):
            raise TokenRefused(401, "invalid token: rooms must be a list of room names")
        if rooms is not None and "*" not in rooms and room not in rooms:
            raise TokenRefused(403, "the token does not allow this room")
        expires = claims.get("exp")
        # Cleaned as a name= parameter is; the application signed it, so a long one is cut.
        name = wire.cleanName(name)[: wire.MAX_NAME].rstrip()
        return Identity(claims["sub"], name, float(expires) if expires is not None else math.inf)


def tokenChecker(secret: str | None, publicKey: bytes | None) -> TokenChecker | None:
    """The checker the settings ask for, or None: identities are not signed."""
    if secret is not None and publicKey is not None:
        raise ValueError("a token secret or a public key, not both")
    if secret is not None:
        return TokenChecker.fromSecret(secret)
    if publicKey is not None:
        return TokenChecker.fromPublicKey(publicKey)
    return None
