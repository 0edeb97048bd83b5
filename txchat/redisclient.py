"""A Redis connection for Twisted, on hiredis: hiredis's C reader parses Redis's replies and its
C{pack_command} encodes commands; this module only matches replies to the commands that asked.

Commands are pipelined: each one gets a Deferred, fired by the replies in the order the
commands were sent. On a subscribed connection, published messages arrive as pushes and go to
C{onMessage} instead. (Why hiredis and not txredisapi: see the README, "Redis".)
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import hiredis
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import ClientCreator, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure

Argument = bytes | str | int | float


class RedisError(Exception):
    """An error reply from Redis."""


class RedisConnection(Protocol):
    transport: Any  # a TCP or TLS connection
    onMessage: Callable[[bytes, bytes], None] | None = None
    onLost: Callable[[Failure], None] | None = None

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=RedisError)
        self._waiting: deque[Deferred[Any]] = deque()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        # Commands are small and pipelined: without this, Nagle's algorithm holds each one
        # back until the previous one's reply has been acknowledged.
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)

    def command(self, *args: Argument) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._waiting.append(d)
        self.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        return d

    @property
    def pending(self) -> int:
        """Commands sent and not yet answered."""
        return len(self._waiting)

    def dataReceived(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                self._replyReceived(reply)
        except hiredis.ProtocolError:
            self.transport.abortConnection()

    def _replyReceived(self, reply: Any) -> None:
        if (
            type(reply) is list and len(reply) == 3 and reply[0] == b"message"
            and self.onMessage is not None
        ):
            self.onMessage(reply[1], reply[2])
            return
        if not self._waiting:
            return
        d = self._waiting.popleft()
        if isinstance(reply, RedisError):
            d.errback(reply)
        else:
            d.callback(reply)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(ConnectionLost("Redis connection lost"))
        if self.onLost is not None:
            self.onLost(reason)
        self.lost.callback(None)


def connectRedis(reactor: Any, host: str, port: int, tls: bool, timeout: float) -> Deferred[RedisConnection]:
    """Connect quietly: ClientCreator's factory does not log "Starting factory" lines, which
    an endpoint's would at every reconnect attempt during an outage."""
    creator = ClientCreator(reactor, RedisConnection)
    if tls:
        return creator.connectSSL(host, port, optionsForClientTLS(host), timeout=timeout)
    return creator.connectTCP(host, port, timeout=timeout)
