"""Signed identities: the token checks (PyJWT, with keys the tests make)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from txchat.tokens import TokenChecker, TokenRefused, tokenChecker

SECRET = "correct horse battery staple, but longer"


def publicPem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsaKey() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ecKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def hs(claims: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def refusal(checker: TokenChecker, token: str | None, room: str = "lobby") -> tuple[int, str]:
    with pytest.raises(TokenRefused) as caught:
        checker.check(token, room)
    return caught.value.status, str(caught.value)


class TestTokens:
    checker = TokenChecker.fromSecret(SECRET)

    def test_a_good_token_names_its_holder(self) -> None:
        identity = self.checker.check(hs({"sub": "u1", "name": " Ada\n Lovelace ", "exp": time.time() + 60}), "lobby")
        assert identity.subject == "u1" and identity.name == "Ada Lovelace"
        assert identity.expires == pytest.approx(time.time() + 60, abs=5)
        assert self.checker.check(hs({"sub": "u2"}), "lobby").name == ""  # no name: anonymous

    def test_a_name_claim_loses_control_and_format_characters(self) -> None:
        assert self.checker.check(hs({"sub": "u", "name": "\u202eAdmin\u200b\x07"}), "lobby").name == "Admin"

    def test_a_long_name_is_cut_to_32_characters(self) -> None:
        assert self.checker.check(hs({"sub": "u", "name": "x" * 40}), "lobby").name == "x" * 32

    @pytest.mark.parametrize("token, reason", [
        (None, "a token is required"),
        ("", "a token is required"),
        ("not.a.token", "invalid token"),
        (hs({"sub": "u"}, secret="another secret entirely, as long"), "invalid token: Signature verification failed"),
        (hs({"sub": "u", "exp": time.time() - 5}), "token expired"),
        (hs({"sub": "u", "nbf": time.time() + 600}), "token not yet valid"),
        (hs({"name": "no subject"}), "invalid token: Token is missing the \"sub\" claim"),
        (hs({"sub": 7}), "invalid token: Subject must be a string"),
        (hs({"sub": "u", "name": 5}), "invalid token: name must be a string"),
        (hs({"sub": "u", "rooms": "lobby"}), "invalid token: rooms must be a list of room names"),
        (jwt.encode({"sub": "u"}, None, algorithm="none"),  # type: ignore[arg-type]
         "invalid token: The specified alg value is not allowed"),
    ])
    def test_bad_tokens_are_401_with_the_reason(self, token: str, reason: str) -> None:
        status, said = refusal(self.checker, token)
        assert status == 401 and said.startswith(reason)

    def test_rooms_limit_where_a_token_may_connect(self) -> None:
        token = hs({"sub": "u", "rooms": ["garden", "porch"]})
        assert self.checker.check(token, "garden").subject == "u"
        assert refusal(self.checker, token, "lobby") == (403, "the token does not allow this room")
        assert self.checker.check(hs({"sub": "u", "rooms": ["*"]}), "anywhere").subject == "u"

    def test_the_algorithm_is_the_keys_not_the_tokens(self, rsaKey: rsa.RSAPrivateKey,
                                                      ecKey: ec.EllipticCurvePrivateKey) -> None:
        rs = TokenChecker.fromPublicKey(publicPem(rsaKey))
        es = TokenChecker.fromPublicKey(publicPem(ecKey))
        assert (rs.algorithm, es.algorithm) == ("RS256", "ES256")
        assert rs.check(jwt.encode({"sub": "r"}, rsaKey, algorithm="RS256"), "lobby").subject == "r"
        assert es.check(jwt.encode({"sub": "e"}, ecKey, algorithm="ES256"), "lobby").subject == "e"
        # The classic confusion: an HS256 token "signed" with the public key as its secret.
        forged = _hs256WithKey({"sub": "mallory"}, publicPem(rsaKey))
        assert refusal(rs, forged) == (401, "invalid token: The specified alg value is not allowed")
        assert refusal(es, jwt.encode({"sub": "r"}, rsaKey, algorithm="RS256"))[0] == 401
        assert refusal(self.checker, jwt.encode({"sub": "r"}, rsaKey, algorithm="RS256"))[0] == 401

    def test_keys_that_do_not_fit_are_refused_at_start(self, rsaKey: rsa.RSAPrivateKey) -> None:
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        with pytest.raises(ValueError, match="too weak"):
            TokenChecker.fromPublicKey(publicPem(weak))
        with pytest.raises(ValueError, match="P-256"):
            TokenChecker.fromPublicKey(publicPem(ec.generate_private_key(ec.SECP384R1())))
        with pytest.raises(ValueError, match="not a PEM public key"):
            TokenChecker.fromPublicKey(b"-----BEGIN NONSENSE-----")
        with pytest.raises(ValueError, match="not both"):
            tokenChecker(SECRET, publicPem(rsaKey))
        with pytest.raises(ValueError, match="empty"):
            tokenChecker("", None)
        assert tokenChecker(None, None) is None


def _hs256WithKey(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token whose HMAC key is C{key} (PyJWT itself refuses to make one)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims).encode())
    return (signing + b"." + b64(hmac.new(key, signing, hashlib.sha256).digest())).decode()
