"""The Redis broker's connections on string transports: a test sees the commands each one sent
and feeds Redis's replies and pushes back, on a MemoryReactorClock (no redis-server)."""

from __future__ import annotations

from typing import Any

import hiredis
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from txchat.redisclient import RedisConnection


def encode(value: Any) -> bytes:
    """A reply in Redis's protocol (RESP2)."""
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)


class Link:
    """One connection the broker dialled."""

    def __init__(self, connection: RedisConnection, transport: StringTransport) -> None:
        self.connection = connection
        self.transport = transport
        self._reader = hiredis.Reader()

    def commands(self) -> list[list[bytes]]:
        """The commands sent since the last call."""
        self._reader.feed(self.transport.value())
        self.transport.clear()
        sent = []
        while (command := self._reader.gets()) is not False:
            sent.append(command)
        return sent

    def reply(self, *replies: Any) -> None:
        self.connection.dataReceived(b"".join(encode(reply) for reply in replies))

    def lose(self) -> None:
        self.connection.connectionLost(Failure(ConnectionLost()))


def dial(clock: MemoryReactorClock, *which: int) -> list[Link]:
    """Connect the attempts waiting on the clock (those at the indexes C{which}; all without),
    in the order they were made; the others keep waiting. Each connection is handed over at
    once, not a reactor turn later as Twisted's ClientCreator does: what the broker does when
    a connection is ready is then done when this returns, before any reply could be read."""
    waiting = clock.tcpClients[:]
    chosen = which or tuple(range(len(waiting)))
    links = []
    for index in chosen:
        _, _, factory, _, _ = waiting[index]
        connection = factory.buildProtocol(None)
        assert isinstance(connection, RedisConnection)
        transport = StringTransport()
        connection.makeConnection(transport)
        handOver = factory.pending  # type: ignore[attr-defined]  # ClientCreator's, a turn later: done here instead
        func, args = handOver.func, handOver.args
        handOver.cancel()
        func(*args)
        link = Link(connection, transport)
        # A connection counts once Redis has answered on it (the publisher's, once its scripts
        # are loaded): this Redis answers at once.
        first = link.commands()
        if first and first[0][:2] == [b"SCRIPT", b"LOAD"]:
            assert all(command[:2] == [b"SCRIPT", b"LOAD"] for command in first)
            link.reply(*(b"sha" for _ in first))
            first = link.commands()
        assert first == [[b"PING"]]
        link.reply(b"PONG")
        links.append(link)
    clock.tcpClients[:] = [attempt for index, attempt in enumerate(waiting) if index not in chosen]
    return links
