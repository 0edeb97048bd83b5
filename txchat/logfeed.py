"""The feed from Redis to the cluster's chat log: every numbered message, written to PostgreSQL
exactly once, whoever numbered it and whatever went down meanwhile (SPEC §16).

The script that numbers a message in Redis also appends it to the stream ``txchat:log``, in the
same step; so a message is numbered if and only if it is in the stream. Every process runs a
feed, a consumer in the stream's group ``txchat-log``: it reads a batch (XREADGROUP), writes it
to the log in one transaction (idempotent on room, epoch, seq), then acknowledges and deletes
it (XACK, XDEL). Whatever goes wrong between the read and the acknowledgement leaves the
entries pending in Redis, and they are written again; writing twice is harmless, so the log
ends with each message once:

- PostgreSQL down or cut off: the batch is kept and its write retried with backoff; new entries
  wait in the stream (the count of what waits, C{waiting}, is a metric). The outage is logged
  once, and once more when it is over. Delivery never waits: it does not pass through here.
- Redis away: the feed pauses, and when it is back reads its own pending entries first (id 0).
- A process killed after numbering: its pending entries, idle for C{claimIdle} seconds, are
  claimed by another process's feed (XAUTOCLAIM); a feed restarted under the same consumer
  name reads them itself at once.

The feed polls on its clock (C{poll} seconds when the stream is drained, at once while batches
are full) rather than blocking in Redis: a blocking read would be a command unanswered for as
long, which the connection's heartbeat (L{txchat.redisclient}) would take for a dead Redis.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txchat.chatlog import LogError
from txchat.config import Config
from txchat.redisbroker import RedisAddress
from txchat.redisclient import RedisConnection, RedisError, connectRedis
from txchat.stream import Delivery

__all__ = ["GROUP", "LogFeed", "LogFeedService", "STREAM", "entry"]

_log = Logger()

STREAM = b"txchat:log"
GROUP = b"txchat-log"


class LogWriter(Protocol):
    where: str

    def write(self, batch: Sequence[Delivery]) -> Deferred[int]:
        """Write numbered messages, idempotent on (room, epoch, seq); fails with L{LogError}."""


def entry(fields: list[bytes]) -> Delivery | None:
    """A stream entry's fields (room R epoch E seq S time T name N text X from F [ref ID]) as a
    numbered message; None when it is not one."""
    values = dict(zip(fields[::2], fields[1::2]))
    try:
        ref = values.get(b"ref")
        return Delivery(
            values[b"room"].decode("utf-8"), values[b"text"], values[b"name"].decode("utf-8", "replace"),
            int(values[b"time"]), int(values[b"seq"]), values[b"epoch"].decode("utf-8"),
            values.get(b"from", b"").decode("utf-8", "replace"),
            ref.decode("utf-8", "replace") if ref else None,  # (the script gives "" for none)
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def _entries(reply: Any) -> list[tuple[bytes, list[bytes] | None]]:
    """XREADGROUP's reply ([[stream, [[id, fields] ...]]] or nil) as (id, fields) pairs; fields
    are nil for an entry deleted while pending."""
    if not reply:
        return []
    return [(item[0], item[1]) for item in reply[0][1]]


class LogFeed:
    """One consumer of the stream; L{start} and L{stop} it (L{LogFeedService} does).

    States (C{state}): "stopped"; "connecting" (no Redis: retrying with backoff); "reading"
    (a read or claim owed by Redis); "writing" (a batch being written); "idle" (waiting for
    the next poll, or for the next try of a batch PostgreSQL refused).

    @param connect: a new Redis connection (cancellable while it is being made).
    @param prepare: readies a new connection for commands (AUTH, SELECT).
    @param consumer: this feed's name in the group: stable across restarts of one process
        (it then reads its own pending entries at once), unique among live processes.
    @param retryDelay: the delay before try N, of Redis and of PostgreSQL.
    """

    def __init__(
        self,
        log: LogWriter,
        connect: Callable[[], Deferred[RedisConnection]],
        clock: IReactorTime,
        consumer: str,
        *,
        prepare: Callable[[RedisConnection], Deferred[Any]] = lambda connection: succeed(None),
        stream: bytes = STREAM,
        group: bytes = GROUP,
        count: int = 500,
        poll: float = 0.2,
        claimIdle: float = 30.0,
        claimEvery: float = 5.0,
        retryDelay: Callable[[int], float] = backoffPolicy(initialDelay=0.2, maxDelay=5.0, factor=2.0),
    ) -> None:
        self._logWriter = log
        self._connect = connect
        self._clock = clock
        self.consumer = consumer.encode("utf-8")
        self._stream = stream
        self._group = group
        self._count = count
        self._poll = poll
        self._claimIdle = claimIdle
        self._claimEvery = claimEvery
        self._retryDelay = retryDelay
        self.state = "stopped"
        self._connection: RedisConnection | None = None
        self._prepare = prepare
        self._dialing: Deferred[RedisConnection] | None = None
        self._preparing: RedisConnection | None = None  # connected, being authenticated
        self._stopping = False
        self._redisAttempt = 0
        self._timer: IDelayedCall | None = None
        self._busy: Deferred[None] | None = None  # a read, claim or write in flight
        self._own = True  # reading this consumer's pending entries (from _cursor) before new ones
        self._cursor = b"0"
        self._claimFrom = b"0-0"
        self._nextClaim = 0.0
        self._held: list[tuple[bytes, Delivery]] = []  # a batch PostgreSQL refused, to write again
        self._logAttempt = 0
        self.logUp = True  # PostgreSQL took the last write (or none was tried)
        self._redisError: str | None = None
        self.waiting = 0  # entries in the stream, not yet written and deleted (as last read)
        self.written = 0  # messages this feed wrote that were new to the log
        self.malformed = 0

    # -- the Redis connection ---------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._nextClaim = self._clock.seconds() + self._claimEvery
        self._dial()

    def _dial(self) -> None:
        self._timer = None
        self.state = "connecting"
        d = self._dialing = self._connect()
        d.addCallbacks(self._connected, self._dialFailed)

    def _connected(self, connection: RedisConnection) -> None:
        self._dialing = None
        self._preparing = connection
        connection.onLost = lambda reason: self._lost(connection)
        d = self._prepare(connection).addCallback(lambda _: self._createGroup(connection))
        d.addCallbacks(lambda _: self._ready(connection), self._prepareFailed, errbackArgs=(connection,))

    def _createGroup(self, connection: RedisConnection) -> Deferred[None]:
        """Create the group if it is not there, from the stream's start: what the stream holds
        is not written yet (written entries are deleted), also what was added before any feed
        ran."""
        d = connection.command(b"XGROUP", b"CREATE", self._stream, self._group, b"0", b"MKSTREAM")

        def busy(failure: Failure) -> None:
            if not (failure.check(RedisError) and str(failure.value).startswith("BUSYGROUP")):
                failure.raiseException()

        return d.addCallbacks(lambda _: None, busy)

    def _ready(self, connection: RedisConnection) -> None:
        self._preparing = None
        if self._stopping:
            connection.transport.loseConnection()
            return
        self._connection = connection
        self._redisAttempt = 0
        self._own, self._cursor = True, b"0"  # what was read before and not acknowledged, first
        self._next(0)

    def _prepareFailed(self, failure: Failure, connection: RedisConnection) -> None:
        self._preparing = None
        connection.onLost = None
        connection.transport.abortConnection()
        self._dialFailed(failure)

    def _dialFailed(self, failure: Failure) -> None:
        self._dialing = None
        if self._stopping:
            return
        error = str(failure.value) or type(failure.value).__name__
        if failure.check(RedisError) and error != self._redisError:
            _log.warn("chat log feed: Redis refused to serve {stream}: {error}",
                      stream=self._stream.decode("ascii", "replace"), error=error)
        self._redisError = error
        self._redisLater()

    def _lost(self, connection: RedisConnection) -> None:
        if connection is not self._connection:
            return  # lost while being prepared: _prepareFailed deals with it
        self._connection = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self._stopping:
            self._redisLater()

    def _redisLater(self) -> None:
        self.state = "connecting"
        self._timer = self._clock.callLater(self._retryDelay(self._redisAttempt), self._dial)
        self._redisAttempt += 1

    # -- the loop ----------------------------------------------------------------------------

    def _next(self, delay: float) -> None:
        """The next step after C{delay} seconds (unless one is in flight or the feed is paused)."""
        if self._stopping or self._connection is None or self._busy is not None:
            return  # (without a connection, the timer is the reconnection's)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if delay > 0:
            self.state = "idle"
            self._timer = self._clock.callLater(delay, self._step)
        else:
            self._step()

    def _step(self) -> None:
        self._timer = None
        connection = self._connection
        if self._stopping or connection is None or self._busy is not None:
            return
        if self._held:
            self._write(self._held)
            connection.command(b"XLEN", self._stream).addCallbacks(self._counted, lambda _: None)
            return
        self.state = "reading"
        if not self._own and self._clock.seconds() >= self._nextClaim:
            d = connection.command(b"XAUTOCLAIM", self._stream, self._group, self.consumer,
                                   int(self._claimIdle * 1000), self._claimFrom, b"COUNT", self._count)
            d.addCallback(self._claimed)
        else:
            d = connection.command(b"XREADGROUP", b"GROUP", self._group, self.consumer, b"COUNT", self._count,
                                   b"STREAMS", self._stream, self._cursor if self._own else b">")
            d.addCallback(self._read)
        connection.command(b"XLEN", self._stream).addCallbacks(self._counted, lambda _: None)
        self._busy = d.addErrback(self._readFailed)

    def _counted(self, length: int) -> None:
        self.waiting = int(length)

    def _read(self, reply: Any) -> None:
        self._busy = None
        self._redisOk()
        entries = _entries(reply)
        if self._own:
            if not entries:
                self._own = False  # every entry read before is written: on to new ones
                self._next(0)
                return
            self._cursor = entries[-1][0]
        self._take(entries, full=len(entries) >= self._count)

    def _claimed(self, reply: Any) -> None:
        """XAUTOCLAIM's reply: [next start, [[id, fields] ...], (Redis 7) [deleted ids]]."""
        self._busy = None
        self._redisOk()
        self._claimFrom = reply[0]
        if self._claimFrom == b"0-0":
            self._nextClaim = self._clock.seconds() + self._claimEvery
        entries = [(item[0], item[1]) for item in reply[1] if item]
        if entries:
            _log.info("chat log feed: took over {count} entries left pending by a process gone quiet",
                      count=len(entries))
        self._take(entries, full=self._claimFrom != b"0-0")

    def _take(self, entries: list[tuple[bytes, list[bytes] | None]], full: bool) -> None:
        if self._stopping:
            return  # left pending, for the next start or another feed
        batch: list[tuple[bytes, Delivery]] = []
        done: list[bytes] = []  # deleted while pending (already written), or not a message
        for id, fields in entries:
            message = entry(fields) if fields is not None else None
            if message is None:
                if fields is not None:
                    self.malformed += 1
                    _log.warn("chat log feed: stream entry {id} is not a numbered message; dropped",
                              id=id.decode("ascii", "replace"))
                done.append(id)
            else:
                batch.append((id, message))
        self._acknowledge(done)
        if batch:
            self._write(batch)
        else:
            self._next(0 if full else self._poll)

    def _readFailed(self, failure: Failure) -> None:
        self._busy = None
        if not failure.check(RedisError):
            return  # the connection went: _lost deals with it
        error = str(failure.value)
        if self._stopping:
            return
        if error.startswith("NOGROUP") and self._connection is not None:
            # The stream and its group are gone (Redis lost its data, or someone deleted them).
            connection = self._connection
            self._busy = self._createGroup(connection).addCallbacks(self._regrouped, self._readFailed)
            return
        if error != self._redisError:
            self._redisError = error
            _log.warn("chat log feed: Redis refused a read of {stream}: {error}",
                      stream=self._stream.decode("ascii", "replace"), error=error)
        self._next(self._retryDelay(self._redisAttempt))
        self._redisAttempt += 1

    def _regrouped(self, _: object) -> None:
        self._busy = None
        self._own, self._cursor, self._claimFrom = True, b"0", b"0-0"
        self._next(0)

    def _redisOk(self) -> None:
        if self._redisError is not None:
            self._redisError = None
            self._redisAttempt = 0

    # -- writing -----------------------------------------------------------------------------

    def _write(self, batch: list[tuple[bytes, Delivery]]) -> None:
        self.state = "writing"
        d = self._logWriter.write([message for _, message in batch])
        self._busy = d.addCallbacks(self._wrote, self._writeFailed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _wrote(self, new: int, batch: list[tuple[bytes, Delivery]]) -> None:
        self._busy = None
        self.written += new
        self._held = []
        self._logAttempt = 0
        if not self.logUp:
            self.logUp = True
            _log.info("chat log at {where} is written again: catching up on what waited in Redis",
                      where=self._logWriter.where)
        self._acknowledge([id for id, _ in batch])
        self._next(0)

    def _writeFailed(self, failure: Failure, batch: list[tuple[bytes, Delivery]]) -> None:
        self._busy = None
        self._held = batch  # still pending in Redis too: written by whoever gets there first
        if self.logUp:
            self.logUp = False
            problem = str(failure.value) if failure.check(LogError) else repr(failure.value)
            _log.warn(
                "chat log at {where} cannot be written ({error}): numbered messages wait in Redis "
                "({stream}) and are written when it is back; chat goes on",
                where=self._logWriter.where, error=problem, stream=self._stream.decode("ascii", "replace"),
            )
            if not failure.check(LogError):
                _log.failure("chat log write", failure)
        delay = self._retryDelay(self._logAttempt)
        self._logAttempt += 1
        self._next(delay)

    def _acknowledge(self, ids: list[bytes]) -> None:
        """Acknowledge and delete written entries; unanswered, because a loss only means they
        are written again (idempotent) after the next read of pending entries."""
        connection = self._connection
        if not ids or connection is None:
            return
        connection.command(b"XACK", self._stream, self._group, *ids).addErrback(lambda _: None)
        connection.command(b"XDEL", self._stream, *ids).addErrback(lambda _: None)

    # -- stopping ----------------------------------------------------------------------------

    def stop(self) -> Deferred[None]:
        """Stop reading; fires once a write in flight has ended and the connection is closed.
        What was read and not acknowledged stays pending, for the next start or another feed."""
        self._stopping = True
        self.state = "stopped"
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._dialing is not None:
            self._dialing.cancel()
        gone: list[Deferred[Any]] = []
        if self._preparing is not None:
            gone.append(self._preparing.lost)
            self._preparing.transport.abortConnection()
        busy = self._busy if self._busy is not None else succeed(None)
        done: Deferred[None] = Deferred()

        def close(_: object) -> None:
            connection, self._connection = self._connection, None
            if connection is not None:
                gone.append(connection.lost)
                connection.transport.loseConnection()
            DeferredList(gone).addCallback(lambda _: done.callback(None))

        busy.addBoth(close)
        return done


def redisConnector(
    url: str, reactor: Any, config: Config = Config(),
) -> tuple[Callable[[], Deferred[RedisConnection]], Callable[[RedisConnection], Deferred[Any]]]:
    """How to connect to the Redis at C{url}, and ready a connection (as the broker does:
    heartbeat, AUTH, SELECT)."""
    address = RedisAddress.fromURL(url)

    def connect() -> Deferred[RedisConnection]:
        return connectRedis(reactor, address.host, address.port, address.tls, config.redisConnectTimeout,
                            config.redisTimeout)

    def prepare(connection: RedisConnection) -> Deferred[Any]:
        ready: Deferred[Any] = succeed(None)
        if address.password is not None:
            auth = ((b"AUTH", address.username, address.password) if address.username
                    else (b"AUTH", address.password))
            ready = connection.command(*auth)
        if address.db:
            ready.addCallback(lambda _: connection.command(b"SELECT", address.db))
        return ready

    return connect, prepare


class LogFeedService(Service):
    """Runs a L{LogFeed} from the Redis at C{url} into C{log}, and closes C{log} when stopped.

    @param log: an opened L{txchat.pglog.PostgresLog} (L{txchat.pglog.PostgresLog.connect}).
    @param consumer: the feed's consumer name (see L{LogFeed}).
    @param metrics: if given, its C{watchLog} gets the count of what waits and whether the
        log takes writes.
    """

    def __init__(self, url: str, log: Any, reactor: Any, consumer: str, config: Config = Config(),
                 metrics: Any = None, **options: Any) -> None:
        self.log = log
        retry = backoffPolicy(initialDelay=config.redisFirstRetry, maxDelay=config.redisMaxRetry, factor=2.0)
        options.setdefault("retryDelay", retry)
        connect, prepare = redisConnector(url, reactor, config)
        self.feed = LogFeed(log, connect, reactor, consumer, prepare=prepare, **options)
        if metrics is not None:
            metrics.watchLog(waiting=lambda: self.feed.waiting, up=lambda: 1 if self.feed.logUp else 0)

    def startService(self) -> None:
        super().startService()
        self.feed.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d = self.feed.stop()
        return d.addCallback(lambda _: self.log.close())
