"""Signed identities: the token checks (PyJWT, with keys the tests make), and the handshake
and the expiry close in memory on a task.Clock."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.memory import Peer, V1Peer, makeHub
from txchat.tokens import TokenChecker, TokenRefused, tokenChecker

SECRET = "correct horse battery staple, but longer"


def publicPem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsaKey():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ecKey():
    return ec.generate_private_key(ec.SECP256R1())


def hs(claims: dict, secret: str = SECRET, **headers) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def refusal(checker: TokenChecker, token: str | None, room: str = "lobby") -> tuple[int, str]:
    with pytest.raises(TokenRefused) as caught:
        checker.check(token, room)
    return caught.value.status, str(caught.value)


@pytest.mark.unit
class TestTokens:
    checker = TokenChecker.fromSecret(SECRET)

    def test_a_good_token_names_its_holder(self):
        identity = self.checker.check(hs({"sub": "u1", "name": " Ada\n Lovelace ", "exp": time.time() + 60}), "lobby")
        assert identity.subject == "u1" and identity.name == "Ada Lovelace"
        assert identity.expires == pytest.approx(time.time() + 60, abs=5)
        assert self.checker.check(hs({"sub": "u2"}), "lobby").name == ""  # no name: anonymous

    def test_a_name_claim_loses_control_and_format_characters(self):
        assert self.checker.check(hs({"sub": "u", "name": "\u202eAdmin\u200b\x07"}), "lobby").name == "Admin"

    def test_a_long_name_is_cut_to_32_characters(self):
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
        (jwt.encode({"sub": "u"}, None, algorithm="none"), "invalid token: The specified alg value is not allowed"),
    ])
    def test_bad_tokens_are_401_with_the_reason(self, token, reason):
        status, said = refusal(self.checker, token)
        assert status == 401 and said.startswith(reason)

    def test_rooms_limit_where_a_token_may_connect(self):
        token = hs({"sub": "u", "rooms": ["garden", "porch"]})
        assert self.checker.check(token, "garden").subject == "u"
        assert refusal(self.checker, token, "lobby") == (403, "the token does not allow this room")
        assert self.checker.check(hs({"sub": "u", "rooms": ["*"]}), "anywhere").subject == "u"

    def test_the_algorithm_is_the_keys_not_the_tokens(self, rsaKey, ecKey):
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

    def test_keys_that_do_not_fit_are_refused_at_start(self, rsaKey):
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


def _hs256WithKey(claims: dict, key: bytes) -> str:
    """An HS256 token whose HMAC key is C{key} (PyJWT itself refuses to make one)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims).encode())
    return (signing + b"." + b64(hmac.new(key, signing, hashlib.sha256).digest())).decode()


@pytest.mark.memory
class TestSignedHandshakes:
    def hub(self):
        hub, clock = makeHub(tokenSecret=SECRET)
        clock.advance(time.time())  # the clock reads the wall clock's time, as the reactor's does
        return hub, clock

    def test_every_handshake_needs_a_token_and_the_name_is_the_tokens(self):
        hub, clock = self.hub()
        token = hs({"sub": "u1", "name": "Signed Sam"})
        v1 = V1Peer(hub, "lobby", f"name=Forged&token={token}")
        plain = Peer(hub, path=f"/ws?token={token}")
        assert v1.status == 101 and plain.status == 101
        v1.say("hello")
        plain.say("from plain")
        clock.advance(0)
        lines = [line for line in v1.lines() if line["type"] == "message"]
        assert [(line["name"], line["text"]) for line in lines] == [("Signed Sam", "hello"), ("Signed Sam", "from plain")]
        assert plain.messages() == ["hello", "from plain"]  # the plain protocol is unchanged

    @pytest.mark.parametrize("query, status", [
        ("", 401),
        ("token=", 401),
        ("token=garbage", 401),
        (f"token={hs({'sub': 'u', 'exp': 1})}", 401),
        (f"token={hs({'sub': 'u', 'rooms': ['garden']})}", 403),
        ("token=%zz", 400),
        (f"token={hs({'sub': 'm'})}%", 400),
    ])
    def test_refused_handshakes_disturb_nobody(self, query, status):
        hub, clock = self.hub()
        member = V1Peer(hub, "lobby", f"token={hs({'sub': 'm'})}")
        refused = V1Peer(hub, "lobby", query)
        plainRefused = Peer(hub, path=f"/ws?{query}")
        assert refused.status == plainRefused.status == status
        assert len(hub) == 1
        member.say("still here")
        clock.advance(0)
        assert [line.get("text") for line in member.lines()][-1] == "still here"

    def test_a_connection_is_closed_with_4001_when_its_token_expires(self):
        hub, clock = self.hub()
        expiring = V1Peer(hub, "lobby", f"token={hs({'sub': 'e', 'exp': int(clock.seconds()) + 30})}")
        lasting = V1Peer(hub, "lobby", f"token={hs({'sub': 'l'})}")
        clock.advance(20)
        assert expiring.closeCode() is None
        clock.advance(11)
        assert expiring.closeCode() == 4001
        close = [payload for opcode, payload in expiring.received if opcode == 8][0]
        assert close[2:] == b"token expired"
        lasting.say("after the expiry")
        clock.advance(0)
        assert [line.get("text") for line in lasting.lines()][-1] == "after the expiry"
        assert lasting.closeCode() is None
