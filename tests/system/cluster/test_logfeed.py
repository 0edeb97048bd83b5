"""The feed from Redis's stream txchat:log to the cluster's chat log, with a real redis-server and
a real PostgreSQL: entries added by hand as the numbering script adds them."""

from __future__ import annotations

from typing import Any, Iterator, Sequence, cast

import psycopg
import pytest
import pytest_twisted
from prometheus_client import generate_latest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from bench.postgresserver import PostgresServer
from bench.redisserver import RedisServer
from tests.support.live import within
from tests.support.postgres import postgresServer, postgresURL  # noqa: F401  (fixtures)
from tests.support.redis import redis  # noqa: F401  (a fixture)
from txchat.logfeed import GROUP, STREAM, LogFeed, LogFeedService
from txchat.metrics import Metrics
from txchat.pglog import PostgresLog
from txchat.redisclient import RedisConnection, connectRedis
from txchat.stream import Delivery


class WatchedLog:
    """A PostgresLog whose writes a test can wait for: C{new} counts the messages new to the
    log, C{failed} the writes that failed."""

    def __init__(self, log: PostgresLog) -> None:
        self.log = log
        self.where = log.where
        self.new = 0
        self.failed = 0
        self._waiting: list[tuple[str, int, Deferred[None]]] = []

    def write(self, batch: Sequence[Delivery]) -> Deferred[int]:
        def wrote(n: int) -> int:
            self.new += n
            self._check()
            return n

        def failed(failure: Any) -> Any:
            self.failed += 1
            self._check()
            return failure

        return self.log.write(batch).addCallbacks(wrote, failed)

    def close(self) -> Deferred[None]:
        return self.log.close()

    def until(self, what: str, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiting.append((what, count, d))
        self._check()
        return within(d, 60)

    def _check(self) -> None:
        ready = [(w, n, d) for w, n, d in self._waiting if getattr(self, w) >= n]
        self._waiting = [item for item in self._waiting if item not in ready]
        for _, _, d in ready:
            d.callback(None)


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    seen: list[LogEvent] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


def said(events: list[LogEvent], words: str) -> int:
    return len([e for e in events if words in e.get("log_format", "")])


async def connection(redis: RedisServer) -> RedisConnection:
    return await connectRedis(reactor, "127.0.0.1", redis.port, False, 5)


async def add(redis: RedisConnection, room: str, seqs: range, epoch: str = "e1") -> None:
    """Entries as the numbering script adds them (pipelined)."""
    replies = [
        redis.command(b"XADD", STREAM, b"*", b"room", room, b"epoch", epoch, b"seq", seq, b"time", 1_700_000_000_000 + seq,
                      b"name", "Änne", b"text", "hello %d ✓" % seq, b"from", "u:anne",
                      *((b"ref", f"s{seq}") if seq % 2 else ()))
        for seq in seqs
    ]
    await DeferredList(replies, fireOnOneErrback=True)


async def feed(redis: RedisServer, log: Any, consumer: str, **options: Any) -> LogFeed:
    service = LogFeedService(redis.url, log, reactor, consumer, **options)
    service.startService()
    return service.feed


def logged(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as c:
        return c.execute("SELECT room, epoch, seq, time, name, text, sender, ref FROM messages "
                         "ORDER BY room, epoch, seq").fetchall()


async def drained(redis: RedisConnection) -> tuple[int, int]:
    """What the stream holds, and how many of its entries are pending."""
    length = await redis.command(b"XLEN", STREAM)
    pending = await redis.command(b"XPENDING", STREAM, GROUP)
    return int(length), int(pending[0])


@pytest_twisted.ensureDeferred
async def test_two_feeds_write_every_entry_once_and_empty_the_stream(redis: RedisServer, postgresURL: str) -> None:  # noqa: F811
    log = WatchedLog(await PostgresLog.connect(postgresURL, reactor))
    a = await feed(redis, log, "a")
    b = await feed(redis, log, "b", count=50)
    raw = await connection(redis)
    for room in ("lobby", "rust", "go"):
        await add(raw, room, range(1, 1001))
    await log.until("new", 3000)
    await DeferredList([a.stop(), b.stop()])
    await log.close()
    rows = logged(postgresURL)
    assert len(rows) == 3000
    assert [(r[0], r[2]) for r in rows] == [(room, seq) for room in ("go", "lobby", "rust") for seq in range(1, 1001)]
    assert rows[0][3:] == (1_700_000_000_001, "Änne", "hello 1 ✓", "u:anne", "s1")
    assert rows[1][7] is None
    assert a.written + b.written == 3000 and a.written and b.written, "both feeds took a share"
    assert await drained(raw) == (0, 0)
    raw.transport.loseConnection()
    await raw.lost


@pytest_twisted.ensureDeferred
async def test_a_feed_restarted_under_its_name_writes_its_own_pending_entries_at_once(
    redis: RedisServer, postgresURL: str,  # noqa: F811
) -> None:
    raw = await connection(redis)
    await raw.command(b"XGROUP", b"CREATE", STREAM, GROUP, b"0", b"MKSTREAM")
    await add(raw, "lobby", range(1, 101))
    # Read by consumer "a", which then died before it wrote them.
    await raw.command(b"XREADGROUP", b"GROUP", GROUP, b"a", b"COUNT", 1000, b"STREAMS", STREAM, b">")
    log = WatchedLog(await PostgresLog.connect(postgresURL, reactor))
    a = await feed(redis, log, "a", claimIdle=3600)
    await log.until("new", 100)
    await a.stop()
    await log.close()
    assert len(logged(postgresURL)) == 100
    assert await drained(raw) == (0, 0)
    raw.transport.loseConnection()
    await raw.lost


@pytest_twisted.ensureDeferred
async def test_entries_of_a_consumer_killed_before_it_acknowledged_are_claimed_by_another(
    redis: RedisServer, postgresURL: str, events: list[LogEvent],  # noqa: F811
) -> None:
    raw = await connection(redis)
    await raw.command(b"XGROUP", b"CREATE", STREAM, GROUP, b"0", b"MKSTREAM")
    await add(raw, "lobby", range(1, 101))
    # Consumer "dead" read the entries, then was killed before it wrote them.
    await raw.command(b"XREADGROUP", b"GROUP", GROUP, b"dead", b"COUNT", 1000, b"STREAMS", STREAM, b">")
    log = WatchedLog(await PostgresLog.connect(postgresURL, reactor))
    b = await feed(redis, log, "b", claimIdle=1.0, claimEvery=0.2)
    await log.until("new", 100)
    await b.stop()
    await log.close()
    assert len(logged(postgresURL)) == 100
    assert await drained(raw) == (0, 0)
    assert said(events, "took over") >= 1
    raw.transport.loseConnection()
    await raw.lost


@pytest_twisted.ensureDeferred
async def test_postgresql_down_for_a_while_everything_written_once_outage_logged_once(
    redis: RedisServer, events: list[LogEvent],
) -> None:
    server = await deferToThread(lambda: PostgresServer().start())
    try:
        url = server.database("outage")
        log = WatchedLog(await PostgresLog.connect(url, reactor))
        metrics = Metrics()
        a = await feed(redis, log, "a", retryDelay=lambda attempt: 0.3, metrics=metrics)
        b = await feed(redis, log, "b", retryDelay=lambda attempt: 0.3, claimIdle=1.0, claimEvery=0.3)
        raw = await connection(redis)
        await add(raw, "lobby", range(1, 201))
        await log.until("new", 200)
        await deferToThread(server.stop)
        await add(raw, "lobby", range(201, 1201))
        await log.until("failed", 8)  # retried, and the retries fail while it is down
        assert not a.logUp or not b.logUp
        assert a.waiting + b.waiting > 0, "the metric counts what waits"
        scraped = generate_latest(metrics.registry).decode()
        assert f"txchat_log_waiting {float(a.waiting)}" in scraped
        assert f"txchat_log_up {1.0 if a.logUp else 0.0}" in scraped
        await deferToThread(server.start)
        await log.until("new", 1200)
        # A feed whose held batch another feed claimed and wrote says so at its next retry.
        for _ in range(100):
            if a.logUp and b.logUp:
                break
            await deferLater(reactor, 0.1, lambda: None)
        assert a.logUp and b.logUp, "each feed saw the log back"
        await DeferredList([a.stop(), b.stop()])
        await log.close()
        rows = logged(url)
        assert [r[2] for r in rows] == list(range(1, 1201))
        assert await drained(raw) == (0, 0)
        # Logged once per feed that saw it, however many retries failed; and once when over.
        assert said(events, "cannot be written") == said(events, "is written again") >= 1
        assert said(events, "cannot be written") <= 2 < log.failed
        raw.transport.loseConnection()
        await raw.lost
    finally:
        await deferToThread(server.destroy)


@pytest_twisted.ensureDeferred
async def test_redis_restarted_without_its_data_the_feed_goes_on(redis: RedisServer, postgresURL: str) -> None:  # noqa: F811
    log = WatchedLog(await PostgresLog.connect(postgresURL, reactor))
    a = await feed(redis, log, "a")
    raw = await connection(redis)
    await add(raw, "lobby", range(1, 11))
    await log.until("new", 10)
    raw.transport.loseConnection()
    await raw.lost
    await deferToThread(redis.kill)
    await deferToThread(redis.start)  # empty: the stream and its group are gone
    raw = await connection(redis)
    await add(raw, "lobby", range(1, 11), epoch="e2")
    await log.until("new", 20)
    await a.stop()
    await log.close()
    assert [(r[1], r[2]) for r in logged(postgresURL)] == [(e, s) for e in ("e1", "e2") for s in range(1, 11)]
    raw.transport.loseConnection()
    await raw.lost
