"""The private parts of Autobahn that txchat uses (txchat/autobahn_internals.py), checked one by
one: when an Autobahn release changes one of them, the test named for it fails here."""

from __future__ import annotations

import inspect

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.task import Clock

from bench import frames
from tests.support.memory import Peer, makeHub
from txchat import autobahn_internals


def test_factory_takes_its_handshake_timers_from_batched_timer() -> None:
    factory = WebSocketServerFactory()
    assert hasattr(factory, "_batched_timer"), "Autobahn no longer keeps its timers in _batched_timer"
    clock = Clock()
    autobahn_internals.useClock(factory, clock)
    calls: list[int] = []
    factory._batched_timer.call_later(3, calls.append, 1)
    clock.advance(3)
    assert calls == [1]


def test_config_attrs_lists_the_options_autobahn_copies_onto_each_protocol() -> None:
    names = WebSocketServerProtocol.CONFIG_ATTRS
    assert {"maxMessagePayloadSize", "failByDrop", "openHandshakeTimeout", "closeHandshakeTimeout"} <= set(names)
    factory = WebSocketServerFactory()
    factory.setProtocolOptions(maxMessagePayloadSize=77, failByDrop=False)
    cls = autobahn_internals.protocolWithOptions(factory, WebSocketServerProtocol)
    # The options are class attributes made at run time, which Autobahn's annotations cannot know.
    assert cls.CONFIG_ATTRS == ()  # type: ignore[comparison-overlap]
    assert (cls.maxMessagePayloadSize, cls.failByDrop) == (77, False)  # type: ignore[attr-defined]
    assert all(hasattr(cls, name) for name in names)


def test_private_entry_points_exist_with_the_signatures_used() -> None:
    assert list(inspect.signature(WebSocketServerProtocol._dataReceived).parameters) == ["self", "data"]
    assert list(inspect.signature(WebSocketServerProtocol._fail_connection).parameters)[:3] == [
        "self", "code", "reason"]
    hub, _ = makeHub()
    peer = Peer(hub)
    assert hasattr(peer.protocol, "closeHandshakeTimeoutCall"), "Autobahn renamed its closing-handshake timer"
    peer.transport.abortConnection()


def test_the_internals_do_their_jobs_on_a_real_connection() -> None:
    """feed parses, failConnection sends its close code, the close timer is cancellable."""
    hub, clock = makeHub()
    peer = Peer(hub)
    autobahn_internals.feed(peer.protocol, frames.text("through feed"))
    clock.advance(0)
    assert peer.messages() == ["through feed"]
    autobahn_internals.failConnection(peer.protocol, 1003, "test")
    assert peer.closeCode() == 1003
    timer = peer.protocol.closeHandshakeTimeoutCall
    assert timer is not None and timer.active()
    autobahn_internals.cancelCloseTimer(peer.protocol)
    assert not timer.active()
    peer.transport.abortConnection()
    assert clock.getDelayedCalls() == []
