"""Signed identities: the handshake and the expiry close in memory on a task.Clock."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from twisted.internet.task import Clock

from tests.support.memory import MemoryHub, Peer, V1Peer, makeHub

SECRET = "correct horse battery staple, but longer"


def hs(claims: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


class TestSignedHandshakes:
    def hub(self) -> tuple[MemoryHub, Clock]:
        hub, clock = makeHub(tokenSecret=SECRET)
        clock.advance(time.time())  # the clock reads the wall clock's time, as the reactor's does
        return hub, clock

    def test_every_handshake_needs_a_token_and_the_name_is_the_tokens(self) -> None:
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
    def test_refused_handshakes_disturb_nobody(self, query: str, status: int) -> None:
        hub, clock = self.hub()
        member = V1Peer(hub, "lobby", f"token={hs({'sub': 'm'})}")
        refused = V1Peer(hub, "lobby", query)
        plainRefused = Peer(hub, path=f"/ws?{query}")
        assert refused.status == plainRefused.status == status
        assert len(hub) == 1
        member.say("still here")
        clock.advance(0)
        assert [line.get("text") for line in member.lines()][-1] == "still here"

    def test_a_connection_is_closed_with_4001_when_its_token_expires(self) -> None:
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
