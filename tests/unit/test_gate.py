"""The gate, plain: every refusal with its status, reason, metrics label and log line, and the
tickets it writes, from handshake facts alone (no Autobahn, no hub)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import jwt
import pytest
from twisted.logger import capturedLogs, formatEvent

from txchat.gate import Claim, Gate, Handshake, Refusal, Ticket
from txchat.limits import ConnectionLimits, TrustedProxies
from txchat.metrics import Metrics
from txchat.origin import OriginPolicy
from txchat.tokens import TokenChecker


SECRET = "a secret for the gate's tests, long enough"
PEER = "10.0.0.5:40000"
PLAIN = Handshake(path="/ws", protocols=[], uri="/ws", origin=None, host="chat.example", peerHost="10.0.0.5",
                  forwardedFor=None, peerName=PEER)


def v1(path: str = "/ws", query: str = "", **changes: Any) -> Handshake:
    return replace(PLAIN, path=path, protocols=["txchat.v1"], uri=f"{path}?{query}" if query else path, **changes)


def v2(path: str = "/ws", query: str = "", offered: tuple[str, ...] = ("txchat.v1", "txchat.v2")) -> Handshake:
    return replace(PLAIN, path=path, protocols=list(offered), uri=f"{path}?{query}" if query else path)


def token(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Desk:
    """A gate with real policies and counters; its rooms answer from a table (C{full}: room
    name -> the reason a place there is refused)."""

    def __init__(self, signed: bool = False, maxConnections: int = 0, perIp: int = 0, **full: str) -> None:
        self.metrics = Metrics()
        self.limits = ConnectionLimits(maxConnections, perIp)
        self.full = full
        self.claims: list[Claim] = []
        self.gate: Gate[Claim] = Gate(
            OriginPolicy(["https://app.example"]), TrustedProxies(["10.0.0.0/8"]), self.limits,
            TokenChecker.fromSecret(SECRET) if signed else None, self.metrics.handshakes, self.hold,
        )

    def hold(self, claim: Claim) -> Claim | str:
        self.claims.append(claim)
        return self.full.get(claim.room, claim)

    def count(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value("txchat_handshakes_total", {"outcome": outcome}) or 0.0


REFUSALS = [
    # (what the desk is, the handshake, status, reason, label, the log line or None)
    ({}, replace(PLAIN, path="/nope", uri="/nope"), 404, "no such room", "not-found",
     f"refused {PEER}: no such room '/nope'"),
    ({}, replace(PLAIN, path="/ws/a b", uri="/ws/a b"), 404, "no such room", "not-found",
     f"refused {PEER}: no such room '/ws/a b'"),
    ({}, v1(query="since=nonsense"), 400, "since: must be EPOCH:SEQ, as the welcome line gives them", "bad-request",
     f"refused {PEER}: since: must be EPOCH:SEQ, as the welcome line gives them"),
    ({}, v1(query="name=" + "x" * 33), 400, "name: more than 32 characters", "bad-request",
     f"refused {PEER}: name: more than 32 characters"),
    ({"signed": True}, PLAIN, 401, "a token is required", "token", f"refused {PEER}: a token is required"),
    ({"signed": True}, replace(PLAIN, uri="/ws?token=" + token({"sub": "u", "rooms": ["garden"]})), 403,
     "the token does not allow this room", "token", f"refused {PEER}: the token does not allow this room"),
    ({}, replace(PLAIN, origin="https://evil.example"), 403, "origin not allowed", "origin",
     f"refused {PEER}: origin https://evil.example is not allowed"),
    ({"maxConnections": 1}, PLAIN, 503, "max-connections", "max-connections",
     f"refused {PEER} (10.0.0.5): max-connections"),
    ({"perIp": 1}, PLAIN, 503, "max-connections-per-ip", "max-connections-per-ip",
     f"refused {PEER} (10.0.0.5): max-connections-per-ip"),
    ({"lobby": "max-rooms"}, PLAIN, 503, "max-rooms", "max-rooms", f"refused {PEER} (10.0.0.5): max-rooms"),
    ({"r": "catching-up"}, v1("/ws/r", "since=e:5"), 503, "catching-up", "catching-up",
     f"refused {PEER} (10.0.0.5): catching-up"),
    ({}, v1(query="cid=short"), 400, "cid: 8-64 characters A-Z a-z 0-9 _ -", "bad-request",
     f"refused {PEER}: cid: 8-64 characters A-Z a-z 0-9 _ -"),
    ({}, v2(query="cid=" + "c" * 65), 400, "cid: 8-64 characters A-Z a-z 0-9 _ -", "bad-request",
     f"refused {PEER}: cid: 8-64 characters A-Z a-z 0-9 _ -"),
    ({}, v2(query="cid=has%20space"), 400, "cid: 8-64 characters A-Z a-z 0-9 _ -", "bad-request",
     f"refused {PEER}: cid: 8-64 characters A-Z a-z 0-9 _ -"),
]


@pytest.mark.parametrize("setting, handshake, status, reason, label, logged", REFUSALS)
def test_every_refusal_has_its_status_reason_label_and_log_line(
    setting: dict[str, Any], handshake: Handshake, status: int, reason: str, label: str, logged: str | None,
) -> None:
    desk = Desk(**setting)
    if desk.limits.total or desk.limits.perAddress:
        assert isinstance(desk.gate.admit(PLAIN), Ticket)  # the one connection allowed
    with capturedLogs() as events:
        verdict = desk.gate.admit(handshake)
    assert verdict == Refusal(status, reason, label)
    assert desk.count("refused-" + label) == 1
    lines = [formatEvent(e) for e in events]
    assert lines == ([logged] if logged else [])
    assert desk.limits.open == (1 if desk.limits.total or desk.limits.perAddress else 0), "a refusal holds nothing"


def test_outcomes_are_counted_each_time_through_one_labelled_child_each() -> None:
    """The gate keeps each outcome's counter: a Prometheus labels() lookup per handshake was
    a twentieth of a connect storm."""
    desk = Desk()
    looked: list[str] = []
    handshakes = desk.metrics.handshakes

    class Counting:
        def labels(self, outcome: str) -> Any:
            looked.append(outcome)
            return handshakes.labels(outcome)

    desk.gate = Gate(desk.gate.origins, desk.gate.proxies, desk.limits, None, Counting(), desk.hold)
    for _ in range(3):
        desk.gate.admit(PLAIN)
        desk.gate.admit(replace(PLAIN, path="/nope"))
    assert (desk.count("accepted"), desk.count("refused-not-found")) == (3, 3)
    assert looked == ["accepted", "refused-not-found"]


def test_a_room_refusal_releases_the_connection_it_counted() -> None:
    desk = Desk(perIp=1, lobby="max-rooms")
    assert isinstance(desk.gate.admit(PLAIN), Refusal)
    assert desk.limits.open == 0
    desk.full.clear()
    assert isinstance(desk.gate.admit(PLAIN), Ticket), "the address has its place back"


def test_a_closed_gate_refuses_even_where_limits_would() -> None:
    desk = Desk(maxConnections=1)
    desk.gate.admit(PLAIN)
    desk.gate.closed = True
    assert desk.gate.admit(PLAIN) == Refusal(503, "shutting-down", "shutting-down")
    assert desk.count("refused-shutting-down") == 1 and desk.count("refused-max-connections") == 0


def test_a_failing_check_is_logged_and_refused_with_500() -> None:
    class Broken(TrustedProxies):
        def clientAddress(self, peer: str, forwardedFor: str | None) -> str:
            raise RuntimeError("broken")

    desk = Desk()
    desk.gate.proxies = Broken()
    with capturedLogs() as events:
        assert desk.gate.admit(PLAIN) == Refusal(500, None, "error")
    assert [formatEvent(e).splitlines()[0] for e in events] == [f"handshake check failed for {PEER}"]
    assert events[0]["log_failure"].check(RuntimeError)
    assert desk.count("refused-error") == 1


# A ticket's sender when the gate draws one at random ("c:" and 12 hex digits).
RANDOM = "c:<random>"


def ticket(room: str = "lobby", v1: bool = False, name: str = "", since: tuple[str, int] | None = None,
           subject: str | None = None, expires: float = math.inf, address: str = "10.0.0.5",
           peerName: str = PEER, v2: bool = False, sender: str = RANDOM) -> Ticket[Claim]:
    subprotocol = "txchat.v2" if v2 else "txchat.v1" if v1 or v2 else None
    return Ticket(room, v1 or v2, subprotocol, name, since, subject, expires, address, peerName,
                  Claim(room, v1 or v2, since), v2, sender)


EXPIRES = 2_000_000_000
ACCEPTED = [
    # (signed, the handshake, its ticket)
    (False, PLAIN, ticket()),
    (False, replace(PLAIN, uri="/ws?name=Ada&since=e:3"), ticket()),  # the seed's protocol asks for nothing
    (False, v1("/ws/r", "name=%20Ada%0A&since=e:3"), ticket("r", True, "Ada", ("e", 3))),
    (False, replace(PLAIN, origin="http://CHAT.example"), ticket()),  # the page's own host
    (False, replace(PLAIN, origin="https://app.example"), ticket()),  # an allowed origin
    (False, replace(PLAIN, forwardedFor="203.0.113.9, 10.1.1.1"),
     ticket(address="203.0.113.9", peerName=f"203.0.113.9 via {PEER}")),  # through trusted proxies
    (False, replace(PLAIN, peerHost="192.0.2.1", forwardedFor="203.0.113.9"), ticket(address="192.0.2.1")),
    (True, v1(query="name=Forged&token=" + token({"sub": "u", "name": "Sam", "exp": EXPIRES})),
     ticket(v1=True, name="Sam", subject="u", expires=EXPIRES, sender="u:u")),
    (True, replace(PLAIN, uri="/ws?token=" + token({"sub": "u", "name": "Sam"})),
     ticket(name="Sam", subject="u", sender="u:u")),
    # txchat.v2: preferred when offered with v1, alone too; cid= names the sender, not over a token.
    (False, v2(), ticket(v2=True)),
    (False, v2(offered=("txchat.v2",)), ticket(v2=True)),
    (False, v2(offered=("txchat.v2", "txchat.v1")), ticket(v2=True)),
    (False, v2(query="cid=Abc_12-xyz&name=Ada"), ticket(v2=True, name="Ada", sender="a:Abc_12-xyz")),
    (False, v1(query="cid=" + "z" * 64), ticket(v1=True, sender="a:" + "z" * 64)),
    (False, replace(PLAIN, uri="/ws?cid=short"), ticket()),  # the seed's protocol asks for nothing
    (True, v2(query="cid=Abc_12-xyz&token=" + token({"sub": "u"})), ticket(v2=True, subject="u", sender="u:u")),
]


@pytest.mark.parametrize("signed, handshake, expected", ACCEPTED)
def test_an_admitted_handshake_gets_its_ticket(signed: bool, handshake: Handshake, expected: Ticket[Claim]) -> None:
    desk = Desk(signed=signed)
    with capturedLogs() as events:
        got = desk.gate.admit(handshake)
    assert isinstance(got, Ticket)
    if expected.sender == RANDOM:
        assert re.fullmatch(r"c:[0-9a-f]{12}", got.sender), got.sender
        got = replace(got, sender=RANDOM)
    assert got == expected
    assert events == []
    assert desk.claims == [expected.place]
    assert desk.count("accepted") == 1 and desk.limits.open == 1
    desk.gate.release(expected.address)
    assert desk.limits.open == 0


def test_a_place_that_fails_to_be_held_is_logged_refused_with_500_and_holds_nothing() -> None:
    desk = Desk(perIp=1)

    def broken(claim: Claim) -> Claim | str:
        raise RuntimeError("broken")

    desk.gate = Gate(desk.gate.origins, desk.gate.proxies, desk.limits, None, desk.metrics.handshakes, broken)
    with capturedLogs() as events:
        assert desk.gate.admit(PLAIN) == Refusal(500, None, "error")
    assert events[0]["log_failure"].check(RuntimeError)
    assert desk.limits.open == 0 and desk.count("refused-error") == 1
