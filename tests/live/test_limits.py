"""Limits on real sockets: what a hostile client holds, and that the chat goes on meanwhile."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from tests.support.live import Server, connect, within


class NeverFinishes(Protocol):
    """Announces a body and sends only its first bytes."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[float] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"POST /api/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(reactor.seconds())


@pytest_twisted.ensureDeferred
async def test_a_body_that_never_comes_is_cut_at_the_handshake_timeout_and_the_chat_goes_on() -> None:
    server = await Server(handshakeTimeout=0.5).start()
    a, b = await connect(server), await connect(server)
    slow = NeverFinishes()
    started = reactor.seconds()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.number), slow)
    lost = await within(slow.lost, 5)  # Twisted's own idle timeout would hold it for 60 s
    assert 0.5 <= lost - started < 3
    assert slow.received == b"", "cut unanswered: the request never came in whole"
    a.say("still chatting")
    assert await b.receive(1) == ["still chatting"]
    await a.close()
    await b.close()
    await server.stop()
