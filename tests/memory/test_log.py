"""What a connection leaves in the log, in memory: the disconnect line says the close code the
connection was closed with; every handshake to a WebSocket path takes the fast lane, where the
gate says why it refuses one."""

from __future__ import annotations

import re
from typing import Sequence

from twisted.logger import LogEvent, capturedLogs, formatEvent

from bench import frames
from tests.memory.test_limits import SiteClient
from tests.support.memory import Peer, makeHub
from txchat.wire import CLOSE_POLICY


def _disconnects(events: Sequence[LogEvent]) -> list[str]:
    return [line for line in map(formatEvent, events) if line.startswith("disconnect ")]


def test_the_disconnect_line_has_the_code_the_server_closed_with_not_the_peers_drop() -> None:
    hub, clock = makeHub(maxMessageSize=8)
    peer = Peer(hub)
    with capturedLogs() as events:
        peer.say("x" * 9)  # Autobahn fails the connection: 1009
        assert peer.closeCode() == 1009
        peer.transport.abortConnection()  # and the client goes without answering
    assert len(_disconnects(events)) == 1
    assert re.fullmatch(r"disconnect 127\.0\.0\.1:\d+: code 1009 received WebSocket message size 9 exceeds .*",
                        _disconnects(events)[0])
    assert clock.getDelayedCalls() == []


def test_the_disconnect_line_has_the_code_txchat_left_with() -> None:
    hub, clock = makeHub()
    peer = Peer(hub)
    with capturedLogs() as events:
        peer.protocol.leave(CLOSE_POLICY, "rate limit exceeded")
        peer.send(frames.clientFrame(frames.CLOSE, b"\x03\xe8"))  # the client answers with 1000
    assert [re.sub(r":\d+:", ":PORT:", line) for line in _disconnects(events)] == [
        "disconnect 127.0.0.1:PORT: code 1008 rate limit exceeded"]
    assert clock.getDelayedCalls() == []


def test_a_handshake_takes_the_fast_lane_even_while_the_hub_has_no_members() -> None:
    """The gate, not twisted.web, answers a bad room on an empty server too."""
    client = SiteClient()
    assert len(client.hub) == 0
    with capturedLogs() as events:
        client.send(frames.handshake("/ws/a/b"))
    assert client.transport.value().startswith(b"HTTP/1.1 404 no such room\r\n")
    assert [formatEvent(e) for e in events if "refused" in formatEvent(e)] == [
        "refused 127.0.0.1:2: no such room '/ws/a/b'"]


def _ownLines(events: Sequence[LogEvent]) -> list[str]:
    """txchat's lines but the connects, with the peers' ports made one (Autobahn's own are
    quietened by the plugin: tests/unit/test_logtext.py)."""
    ours = [formatEvent(e) for e in events if e.get("log_namespace", "").startswith("txchat")]
    return [re.sub(r":\d+:", ":PORT:", line) for line in ours if not line.startswith("connect ")]


def test_each_way_txchat_ends_a_connection_is_one_line_with_its_code_and_why() -> None:
    hub, clock = makeHub(rateLimit=1, rateBurst=1, pingInterval=5, pongTimeout=10, writeTimeout=3, sendQueue=1000)
    with capturedLogs() as events:
        chatty = Peer(hub)
        chatty.say("one")
        chatty.say("two")  # past the burst
        chatty.send(frames.clientFrame(frames.CLOSE, b"\x03\xe8"))
    assert _ownLines(events) == ["disconnect 127.0.0.1:PORT: code 1008 rate limit exceeded"]

    hub, clock = makeHub(pingInterval=5, pongTimeout=10)
    with capturedLogs() as events:
        silent = Peer(hub)
        silent.stopReading()
        clock.advance(10)  # no pong: closed; then no close reply either
        clock.advance(hub.config.closeTimeout)
    assert _ownLines(events) == ["disconnect 127.0.0.1:PORT: code 1008 no pong"]

    hub, clock = makeHub(writeTimeout=3, sendQueue=1000)
    other = Peer(hub)
    with capturedLogs() as events:
        stuck = Peer(hub)
        stuck.stopReading()
        other.say("cannot drain")
        clock.advance(0)
        clock.advance(3)
    assert stuck.transport.aborted
    assert [line for line in _ownLines(events) if "127.0.0.1:PORT" in line and "disconnect" in line] == [
        "disconnect 127.0.0.1:PORT: code 1006 cut: output could not drain for 3s"]
    assert len([line for line in _ownLines(events) if line.startswith("disconnect")]) == 1
    other.transport.abortConnection()
    clock.advance(0)
    assert clock.getDelayedCalls() == []
