"""Where accepted messages go before they are delivered: the seam for running several processes.

The hub publishes every accepted message to its broker and delivers only what the broker hands
back, so one process and many share the same path and the same single order.

- L{LocalBroker}: one process is the whole chat; publishing is delivering.
- L{RedisBroker}: every process publishes to one Redis channel and delivers what it receives
  from it, so all clients of all processes see one order, the order Redis published in.
  While Redis cannot be reached, each process delivers its own clients' messages to its own
  clients only, and keeps trying to reconnect with capped exponential backoff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Protocol
from urllib.parse import unquote, urlsplit

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txchat.config import Config
from txchat.rooms import Delivery
from txchat.redisclient import RedisConnection, connectRedis

_log = Logger()

Deliver = Callable[[Delivery], None]


class Broker(Protocol):
    # Whether the hub numbers messages itself (one process) or the broker does.
    @property
    def numbersHere(self) -> bool:
        """True when the process is the whole chat and numbers its rooms' messages itself."""

    # For /healthz and /metrics.
    @property
    def state(self) -> str | None:
        """None where there is nothing to connect to; else "starting", "up" or "down"."""

    @property
    def up(self) -> bool:
        """Whether messages reach the other processes."""

    @property
    def backlog(self) -> int:
        """Messages published and not yet acknowledged."""

    @property
    def dropped(self) -> int:
        """Messages refused, in all, for a full backlog."""

    def start(self, deliver: Deliver) -> None:
        """Begin handing published messages, in their one order, to C{deliver}."""

    def publish(self, message: Delivery) -> None:
        """Send an accepted message to every process of the chat, this one included."""

    def stop(self) -> Deferred[None]:
        """Let go of any connection; fires when done."""


class LocalBroker:
    """The in-process broker: one process is the whole chat, so publishing is delivering."""

    numbersHere = True
    state = None
    up = True
    backlog = 0
    dropped = 0

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def publish(self, message: Delivery) -> None:
        if self._deliver is not None:
            self._deliver(message)

    def stop(self) -> Deferred[None]:
        self._deliver = None
        return succeed(None)


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int = 6379
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False

    @classmethod
    def fromURL(cls, url: str) -> RedisAddress:
        """redis://[[user]:password@]host[:port][/db]; rediss:// for TLS."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"must start with redis:// or rediss://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError(f"bad port in {url!r}")
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"database must be a number, got {database!r}")
        return cls(
            host=parts.hostname,
            port=port or 6379,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            db=int(database) if database else 0,
            tls=parts.scheme == "rediss",
        )

    def __str__(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


class _Link:
    """One connection to Redis that comes back by itself after it fails or is lost."""

    def __init__(
        self,
        connect: Callable[[], Deferred[RedisConnection]],
        prepare: Callable[[RedisConnection], Deferred[Any]],
        clock: IReactorTime,
        retryDelay: Callable[[int], float],
        changed: Callable[[], None],
    ) -> None:
        self._connect = connect
        self._prepare = prepare
        self._clock = clock
        self._retryDelay = retryDelay
        self._changed = changed
        self.connection: RedisConnection | None = None  # connected and prepared
        self.tried = False
        self.lastError: str | None = None
        self._attempt = 0
        self._retry: IDelayedCall | None = None
        self._dialing: Deferred[Any] | None = None
        self._open: set[RedisConnection] = set()
        self._stopped = True

    def start(self) -> None:
        self._stopped = False
        self._dial()

    def _dial(self) -> None:
        self._retry = None
        d = self._connect()
        d.addCallback(self._ready)
        d.addErrback(self._failed)
        self._dialing = d

    def _ready(self, connection: RedisConnection) -> Deferred[None]:
        self._open.add(connection)
        connection.onLost = lambda reason: self._lost(connection, reason)

        def prepared(_: object) -> None:
            self._dialing = None
            self.tried = True
            self._attempt = 0
            self.connection = connection
            self._changed()

        def unprepared(failure: Failure) -> Failure:
            connection.transport.abortConnection()
            return failure

        return self._prepare(connection).addCallbacks(prepared, unprepared)

    def _failed(self, failure: Failure) -> None:
        self._dialing = None
        if self._stopped:
            return
        self.tried = True
        self.lastError = str(failure.value) or type(failure.value).__name__
        self._schedule()
        self._changed()

    def _lost(self, connection: RedisConnection, reason: Failure) -> None:
        self._open.discard(connection)
        if connection is not self.connection:
            return  # lost while being prepared: _failed deals with it
        self.connection = None
        self.lastError = str(reason.value) or type(reason.value).__name__
        if not self._stopped:
            self._schedule()
            self._changed()

    def _schedule(self) -> None:
        self._retry = self._clock.callLater(self._retryDelay(self._attempt), self._dial)
        self._attempt += 1

    def stop(self) -> Deferred[Any]:
        """Stop trying; close what is open; fire when every connection is gone."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._dialing is not None:
            self._dialing.cancel()
        self.connection = None
        for connection in self._open:
            connection.transport.loseConnection()
        return DeferredList([c.lost for c in self._open])


def _encode(message: Delivery) -> bytes:
    return json.dumps([message.room, message.name, message.time, message.text.decode("utf-8")],
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode(payload: bytes) -> Delivery | None:
    try:
        room, name, time, text = json.loads(payload)
        return Delivery(room, text.encode("utf-8"), name, time)
    except (ValueError, TypeError):
        return None  # not ours: another program on the channel


class RedisBroker:
    """Publish through Redis pub/sub; deliver what Redis sends back, in Redis's order."""

    numbersHere = False

    def __init__(
        self,
        url: str,
        reactor: Any,
        config: Config = Config(),
        retryDelay: Callable[[int], float] | None = None,
    ) -> None:
        """
        @param reactor: an C{IReactorTCP} (and C{IReactorSSL} for rediss://) and C{IReactorTime}.
        @param retryDelay: the delay before reconnect attempt N; by default the capped, jittered
            exponential backoff that C{config} describes.
        """
        self.address = RedisAddress.fromURL(url)
        self.channel = b"txchat" if not self.address.db else b"txchat:%d" % self.address.db
        self._reactor = reactor
        self._backlog = config.redisBacklog
        self._retryDelay = retryDelay or backoffPolicy(
            initialDelay=config.redisFirstRetry, maxDelay=config.redisMaxRetry, factor=2.0
        )
        self._connectTimeout = config.redisConnectTimeout
        self._deliver: Deliver | None = None
        self.state = "starting"  # then "up" or "down"
        self.dropped = 0  # messages refused because the publish backlog was full
        self.lost = 0  # messages whose publish failed when the connection went
        self._overflowing = False
        self._watchers: list[tuple[str, Deferred[None]]] = []
        self._publisher = self._link(self._authenticate)
        self._subscriber = self._link(self._subscribe)

    def _link(self, prepare: Callable[[RedisConnection], Deferred[Any]]) -> _Link:
        return _Link(self._open, prepare, self._reactor, self._retryDelay, self._changed)

    def _open(self) -> Deferred[RedisConnection]:
        address = self.address
        return connectRedis(self._reactor, address.host, address.port, address.tls, self._connectTimeout)

    def _authenticate(self, connection: RedisConnection) -> Deferred[Any]:
        address = self.address
        if address.password is None:
            return succeed(None)
        if address.username:
            return connection.command(b"AUTH", address.username, address.password)
        return connection.command(b"AUTH", address.password)

    def _subscribe(self, connection: RedisConnection) -> Deferred[Any]:
        connection.onMessage = self._received
        return self._authenticate(connection).addCallback(
            lambda _: connection.command(b"SUBSCRIBE", self.channel)
        )

    # -- state ------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._publisher.connection is not None and self._subscriber.connection is not None

    @property
    def backlog(self) -> int:
        connection = self._publisher.connection
        return connection.pending if connection is not None else 0

    def when(self, state: str) -> Deferred[None]:
        """Fires once the broker is in C{state} ("up" or "down")."""
        if self.state == state:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._watchers.append((state, d))
        return d

    def _changed(self) -> None:
        before = self.state
        self._logChange()
        if self.state != before:
            ready = [d for state, d in self._watchers if state == self.state]
            self._watchers = [(state, d) for state, d in self._watchers if state != self.state]
            for d in ready:
                d.callback(None)

    def _logChange(self) -> None:
        if self.up:
            if self.state != "up":
                _log.info(
                    "{what} Redis at {address}: cross-process delivery is on",
                    what="reconnected to" if self.state == "down" else "connected to",
                    address=str(self.address),
                )
                self.state = "up"
        elif self.state == "up" or (self.state == "starting" and self._publisher.tried and self._subscriber.tried):
            error = self._publisher.lastError or self._subscriber.lastError
            _log.warn(
                "Redis at {address} is unreachable ({error}): serving this process's clients only, "
                "reconnecting in the background",
                address=str(self.address),
                error=error,
            )
            self.state = "down"

    # -- messages ---------------------------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._publisher.start()
        self._subscriber.start()

    def publish(self, message: Delivery) -> None:
        connection = self._publisher.connection
        if connection is None or self._subscriber.connection is None:
            if self._deliver is not None:
                self._deliver(message)  # an outage: this process's clients still chat
            return
        if connection.pending >= self._backlog:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                _log.warn(
                    "Redis publish backlog full ({limit} unanswered): refusing messages until it drains",
                    limit=self._backlog,
                )
            return
        if self._overflowing and connection.pending < self._backlog // 2:
            self._overflowing = False
            _log.info("Redis publish backlog drained; {dropped} messages refused so far", dropped=self.dropped)
        connection.command(b"PUBLISH", self.channel, _encode(message)).addErrback(self._publishFailed)

    def _publishFailed(self, failure: Failure) -> None:
        self.lost += 1

    def _received(self, channel: bytes, message: bytes) -> None:
        if channel == self.channel and self._deliver is not None:
            delivery = _decode(message)
            if delivery is not None:
                self._deliver(delivery)

    def stop(self) -> Deferred[None]:
        self._deliver = None
        d = DeferredList([self._publisher.stop(), self._subscriber.stop()])
        return d.addCallback(lambda _: None)
