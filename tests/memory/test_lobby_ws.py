"""The lobby with real protocols in memory, on a clock that turns as a reactor does: a handshake
that comes while a message is due to go out waits for its flush; under steady chat one goes in
a turn, and on a saturated hub each after the lobby's patience; one that waited past its
deadline is told to try again, one gone while waiting leaves
nothing, a full server refuses at once, and at shutdown the waiting are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import generate_latest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from bench import frames
from tests.support.memory import MemoryHub, Peer, Transport, V1Peer
from tests.support.turnclock import TurnClock
from txchat.config import Config
from txchat.protocol import ChatProtocol

_port = iter(range(42000, 43000))


def hubOnTurns(**config: Any) -> tuple[MemoryHub, TurnClock]:
    clock = TurnClock()
    hub = MemoryHub(Config(**{"history": 0, **config}), clock)
    hub.startBroker()
    return hub, clock


def withMessageDue(text: str, **config: Any) -> tuple[MemoryHub, TurnClock, Peer]:
    """A hub on turns with a member in room r whose message C{text} is due to go out."""
    hub, clock = hubOnTurns(**config)
    talker = Peer(hub, path="/ws/r")
    talker.say(text)
    return hub, clock, talker


def arriving(hub: MemoryHub, path: str = "/ws/r", protocols: str = "txchat.v1") -> tuple[ChatProtocol, Transport]:
    """A connection whose handshake has come, and nothing else done (no turn of the clock)."""
    peer = IPv4Address("TCP", "127.0.0.1", next(_port))
    protocol = hub.buildProtocol(peer)
    assert isinstance(protocol, ChatProtocol)
    transport = Transport(protocol, peer)
    protocol.makeConnection(transport)
    headers = {"Sec-WebSocket-Protocol": protocols} if protocols else {}
    protocol.dataReceived(frames.handshake(path, headers=headers))
    return protocol, transport


def answer(transport: Transport) -> bytes:
    transport.flush()
    return transport.value()


def test_a_handshake_waits_for_the_message_due_and_then_gets_it_as_history() -> None:
    hub, clock = hubOnTurns(history=10)
    alice = V1Peer(hub, "r")
    alice.read()
    alice.say("before you came")  # a flush is due: the reactor has not turned yet
    protocol, transport = arriving(hub)
    assert answer(transport) == b""  # not a byte yet: the message goes out first
    assert len(hub.lobby) == 1 and alice.read() == []
    assert b"\ntxchat_handshakes_queued 1.0\n" in generate_latest(hub.metrics.registry)

    clock.advance(0)  # one turn: the flush, then the handshake
    assert [m["text"] for m in alice.lines() if m["type"] == "message"] == ["before you came"]
    head, _, rest = answer(transport).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    lines = [json.loads(line) for op, p in frames.parseFrames(rest)[0] if op == frames.TEXT for line in p.split(b"\n")]
    assert lines[0]["type"] == "welcome" and lines[0]["seq"] == 1
    assert [(m["seq"], m["text"]) for m in lines if m["type"] == "message"] == [(1, "before you came")]
    assert len(hub.lobby) == 0
    assert b"\ntxchat_handshakes_queued 0.0\n" in generate_latest(hub.metrics.registry)
    transport.loseConnection()
    alice.transport.loseConnection()
    hub.closeAll()
    clock.advance(hub.config.historyTtl)


def test_under_steady_chat_one_handshake_goes_in_a_turn_right_after_the_flush() -> None:
    hub, clock, talker = withMessageDue("0")
    waiting = [arriving(hub, protocols="")[1] for _ in range(3)]
    answered = []
    for turn in range(1, 4):
        talker.say(str(turn))  # every turn has a message to flush
        clock.advance(0)
        answered.append(sum(answer(t).startswith(b"HTTP/1.1 101 ") for t in waiting))
    assert answered == [1, 2, 3]
    clock.advance(0)
    assert talker.messages() == ["0", "1", "2", "3"]
    for transport in [*waiting, talker.transport]:
        transport.loseConnection()


@pytest.mark.parametrize("timeout, late, answered", [
    (10, 0.4, [1, 2, 5]),  # the lobby's patience, a second: the third turn, 1.2 s after they came
    (1, 0.3, [1, 5]),  # half a short --handshake-timeout, so that they go in before it: 0.6 s
])
def test_a_saturated_hub_lets_handshakes_in_after_their_patience_not_one_a_turn(
        timeout: float, late: float, answered: list[int]) -> None:
    """Turns that come late, each with a message to flush: one a turn, and the rest in the
    first turn after they have waited the lobby's patience."""
    hub, clock, talker = withMessageDue("0", handshakeTimeout=timeout)
    waiting = [arriving(hub, protocols="")[1] for _ in range(5)]
    got = []
    for turn in range(1, len(answered) + 1):
        talker.say(str(turn))
        clock.advance(late)
        got.append(sum(answer(t).startswith(b"HTTP/1.1 101 ") for t in waiting))
    assert got == answered
    clock.advance(0)
    assert talker.messages() == [str(turn) for turn in range(len(answered) + 1)]
    for transport in [*waiting, talker.transport]:
        transport.loseConnection()


def test_a_handshake_that_waited_past_its_deadline_is_told_to_try_again() -> None:
    hub, clock, talker = withMessageDue("one", handshakeTimeout=2)
    protocol, transport = arriving(hub, protocols="")
    clock.advance(2.5)  # the turn came late (the process was that busy)
    assert answer(transport).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert not transport.connected and not transport.aborted
    assert len(hub) == 1 and len(hub.lobby) == 0
    assert talker.messages() == ["one"]
    talker.transport.loseConnection()


def test_a_full_server_refuses_at_once_without_queueing() -> None:
    hub, clock, talker = withMessageDue("due", maxConnections=1)
    protocol, transport = arriving(hub, protocols="")
    assert answer(transport).startswith(b"HTTP/1.1 503 ")  # no turn needed
    assert len(hub.lobby) == 0
    clock.advance(0)
    assert talker.messages() == ["due"]
    talker.transport.loseConnection()


def test_frames_sent_before_the_answer_let_the_handshake_in_at_once() -> None:
    hub, clock, talker = withMessageDue("due", maxHeaderSize=1024)
    protocol, transport = arriving(hub, protocols="")
    protocol.dataReceived(frames.text("early"))
    assert answer(transport) == b""  # a small one waits with the handshake
    protocol.dataReceived(frames.text("x" * 1024))  # past --max-header-size: not held unread
    assert answer(transport).startswith(b"HTTP/1.1 101 ")
    assert len(hub.lobby) == 0
    clock.advance(0)
    assert talker.messages() == ["due", "early"]  # (the long one is past the seed's 512 bytes)
    for t in (transport, talker.transport):
        t.loseConnection()


def test_a_connection_gone_while_it_waited_leaves_the_lobby_and_the_chat_goes_on() -> None:
    hub, clock = hubOnTurns()
    alice, bob = Peer(hub, path="/ws/r"), Peer(hub, path="/ws/r")
    alice.say("one")
    protocol, transport = arriving(hub, protocols="")
    assert len(hub.lobby) == 1
    protocol.connectionLost(Failure(ConnectionDone()))
    assert len(hub.lobby) == 0
    clock.advance(0)
    assert bob.messages() == ["one"]
    assert answer(transport) == b"" and len(hub) == 2
    bob.say("two")
    clock.advance(0)
    assert alice.messages() == ["one", "two"]
    for peer in (alice, bob):
        peer.transport.loseConnection()


def test_at_shutdown_the_waiting_handshakes_are_refused() -> None:
    hub, clock, alice = withMessageDue("one")
    waiting = [arriving(hub, protocols="")[1] for _ in range(3)]
    done = hub.closeAll()  # (its last flush lets one in; the others too, at once)
    assert [answer(t)[:13] for t in waiting] == [b"HTTP/1.1 503 "] * 3
    assert len(hub.lobby) == 0
    assert alice.messages() == ["one"]
    alice.transport.loseConnection()
    assert done.called


def test_with_no_limit_a_handshake_is_answered_at_once() -> None:
    hub, clock, alice = withMessageDue("one", handshakesPerTurn=0)
    protocol, transport = arriving(hub, protocols="")
    assert answer(transport).startswith(b"HTTP/1.1 101 ")
    assert len(hub.lobby) == 0
    clock.advance(0)
    transport.loseConnection()
    alice.transport.loseConnection()
