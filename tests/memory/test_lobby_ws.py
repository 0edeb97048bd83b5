"""The lobby with real protocols in memory: a handshake that comes while messages are due to go
out waits until they have, and one whose connection goes while it waits leaves nothing."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from bench import frames
from tests.support.memory import Peer, Transport, V1Peer, makeHub
from txchat.protocol import ChatProtocol


def arriving(hub: object, path: str = "/ws/r", protocols: str = "txchat.v1") -> tuple[ChatProtocol, Transport]:
    """A connection whose handshake has come, and nothing else done (no turn of the clock)."""
    peer = IPv4Address("TCP", "127.0.0.1", 41999)
    protocol = hub.buildProtocol(peer)  # type: ignore[attr-defined]
    assert isinstance(protocol, ChatProtocol)
    transport = Transport(protocol, peer)
    protocol.makeConnection(transport)
    protocol.dataReceived(frames.handshake(path, headers={"Sec-WebSocket-Protocol": protocols}))
    return protocol, transport


def test_a_handshake_waits_for_the_messages_due_and_then_gets_them_as_history() -> None:
    hub, clock = makeHub(history=10)
    alice = V1Peer(hub, "r")
    alice.read()
    alice.say("before you came")  # a flush is due: the reactor has not turned yet
    protocol, transport = arriving(hub)
    transport.flush()
    assert transport.value() == b""  # not a byte yet: the message goes out first
    assert len(hub.lobby) == 1
    assert alice.read() == []

    clock.advance(0)  # the turn: the flush, then (in the next) the handshake
    assert [m["text"] for m in alice.lines() if m["type"] == "message"] == ["before you came"]
    transport.flush()
    head, _, rest = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    lines = [json.loads(p) for op, p in frames.parseFrames(rest)[0] for p in p.split(b"\n") if op == frames.TEXT]
    assert lines[0]["type"] == "welcome" and lines[0]["seq"] == 1
    assert [(m["seq"], m["text"]) for m in lines if m["type"] == "message"] == [(1, "before you came")]
    assert len(hub.lobby) == 0

    transport.loseConnection()
    alice.transport.loseConnection()
    hub.closeAll()
    clock.advance(hub.config.historyTtl)


def test_a_connection_gone_while_it_waited_leaves_the_lobby_and_the_chat_goes_on() -> None:
    hub, clock = makeHub()
    alice, bob = Peer(hub, path="/ws/r"), Peer(hub, path="/ws/r")
    alice.say("one")
    protocol, transport = arriving(hub, protocols="")
    assert len(hub.lobby) == 1
    protocol.connectionLost(Failure(ConnectionDone()))
    assert len(hub.lobby) == 0

    clock.advance(0)
    assert bob.messages() == ["one"]
    transport.flush()
    assert transport.value() == b""  # never answered, never a member
    assert len(hub) == 2
    bob.say("two")
    clock.advance(0)
    assert alice.messages() == ["one", "two"]
    for peer in (alice, bob):
        peer.transport.loseConnection()


def test_with_no_wait_a_handshake_is_answered_at_once() -> None:
    hub, clock = makeHub(handshakeWait=0)
    alice = Peer(hub, path="/ws/r")
    alice.say("one")
    protocol, transport = arriving(hub, protocols="")
    transport.flush()
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    assert len(hub.lobby) == 0
    clock.advance(0)
    transport.loseConnection()
    alice.transport.loseConnection()
