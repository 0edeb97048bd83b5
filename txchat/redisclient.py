"""A Redis connection for Twisted, on hiredis: hiredis's C reader parses Redis's replies and its
C{pack_command} encodes commands; this module only matches replies to the commands that asked.

Commands are pipelined: each one gets a Deferred, fired by the replies in the order the
commands were sent. On a subscribed connection, published messages arrive as pushes and go to
C{onMessage} instead. (Why hiredis and not txredisapi: see docs/how-it-works.md, "The Redis client".)

A Redis cut off without a reset (a silent partition, a stopped process) leaves TCP waiting for
minutes, so the connection has a heartbeat of its own: a PING after a second without a word
from Redis, and a reply owed for C{timeout} seconds with nothing heard meanwhile aborts the
connection, as a lost one. A slow Redis that still answers is not lost.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import hiredis
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import ClientCreator, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure

Argument = bytes | str | int | float


# Seconds without a word from Redis before an idle connection asks (PING).
QUIET = 1.0


class RedisError(Exception):
    """An error reply from Redis."""


class RedisSilent(ConnectionLost):
    """Redis owed a reply for the connection's timeout and said nothing: the connection was
    aborted (a lost connection, with the reason)."""

    def __str__(self) -> str:
        return str(self.args[0])


class RedisConnection(Protocol):
    """
    @param clock: for the heartbeat; without one (or with C{timeout} 0) there is none.
    @param timeout: how long a reply may be owed, with nothing heard, before the connection
        counts as lost.
    """

    transport: Any  # a TCP or TLS connection
    onMessage: Callable[[bytes, bytes], None] | None = None
    onLost: Callable[[Failure], None] | None = None

    def __init__(self, clock: IReactorTime | None = None, timeout: float = 0.0) -> None:
        self._reader = hiredis.Reader(replyError=RedisError)
        self._waiting: deque[Deferred[Any]] = deque()
        self._probes: set[Deferred[Any]] = set()  # the heartbeat's PINGs among them
        self.lost: Deferred[None] = Deferred()
        self._clock = clock
        self.timeout = timeout
        self._heard = 0.0  # when Redis last sent anything
        self._owed = 0.0  # when the waiting commands began to wait (the queue was empty before)
        self._beat: IDelayedCall | None = None
        self._silent: RedisSilent | None = None

    def connectionMade(self) -> None:
        # Commands are small and pipelined: without this, Nagle's algorithm holds each one
        # back until the previous one's reply has been acknowledged.
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        if self._clock is not None and self.timeout > 0:
            self._heard = self._clock.seconds()
            self._beat = self._clock.callLater(min(QUIET, self.timeout), self._heartbeat)

    def command(self, *args: Argument) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if not self._waiting and self._clock is not None:
            self._owed = self._clock.seconds()
        self._waiting.append(d)
        self.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        return d

    @property
    def pending(self) -> int:
        """Commands sent and not yet answered (the heartbeat's own PINGs aside)."""
        return len(self._waiting) - len(self._probes)

    def _heartbeat(self) -> None:
        """Ask an idle connection for a word; abort one that has owed a reply for too long.
        Wakes at least every QUIET seconds, and at the deadline."""
        assert self._clock is not None
        now = self._clock.seconds()
        if self._waiting:
            deadline = max(self._owed, self._heard) + self.timeout
            if now >= deadline:
                self._beat = None
                waiting = self.pending
                self._silent = RedisSilent(f"no reply from Redis for {self.timeout:g}s "
                                           f"({waiting} command{'' if waiting == 1 else 's'} unanswered)")
                self.transport.abortConnection()
                return
            wake = min(deadline - now, QUIET)
        elif now - self._heard >= QUIET:
            probe = self.command(b"PING")
            self._probes.add(probe)
            probe.addErrback(lambda _: None)
            wake = min(QUIET, self.timeout)
        else:
            wake = self._heard + QUIET - now
        self._beat = self._clock.callLater(wake, self._heartbeat)

    def dataReceived(self, data: bytes) -> None:
        if self._clock is not None:
            self._heard = self._clock.seconds()
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
        if self._probes:
            self._probes.discard(d)
        if isinstance(reply, RedisError):
            d.errback(reply)
        else:
            d.callback(reply)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        self._beat = None
        if self._silent is not None:
            reason = Failure(self._silent)
        waiting, self._waiting = self._waiting, deque()
        self._probes.clear()
        for d in waiting:
            d.errback(self._silent or ConnectionLost("Redis connection lost"))
        if self.onLost is not None:
            self.onLost(reason)
        self.lost.callback(None)


def connectRedis(
    reactor: Any, host: str, port: int, tls: bool, timeout: float, replyTimeout: float = 0.0,
) -> Deferred[RedisConnection]:
    """Connect quietly: ClientCreator's factory does not log "Starting factory" lines, which
    an endpoint's would at every reconnect attempt during an outage.

    @param timeout: for the TCP connection.
    @param replyTimeout: the connection's heartbeat timeout (0: no heartbeat)."""
    creator = ClientCreator(reactor, RedisConnection, reactor, replyTimeout)
    if tls:
        return creator.connectSSL(host, port, optionsForClientTLS(host), timeout=timeout)
    return creator.connectTCP(host, port, timeout=timeout)
