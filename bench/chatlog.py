"""The cluster's chat log in PostgreSQL, measured (docs/cluster.md, "The chat log of a cluster").

    python -m bench.chatlog paging     # a room of 1,000,000 messages: pages of 50 at the far end
    python -m bench.chatlog catchup    # 50,000 messages numbered during a 60 s outage: the drain

Each run starts its own PostgreSQL (fsync on) and, for the catch-up, its own redis-server, in
temporary directories, and stops them after. Times are through L{txchat.pglog.PostgresLog}, as
the server calls it: the hop to the log's thread and back included.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from twisted.internet import defer, task
from twisted.internet.threads import deferToThread

from bench.postgresserver import PostgresServer
from bench.redisserver import RedisServer
from txchat.chatlog import Head
from txchat.logfeed import STREAM, LogFeedService
from txchat.pglog import PostgresLog
from txchat.redisclient import connectRedis


def fill(url: str, room: str, epochs: list[tuple[str, int]]) -> None:
    """A room's messages, epoch after epoch, by COPY (as the feed would have written them)."""
    with psycopg.connect(url, autocommit=True) as connection:
        for epoch, count in epochs:
            ord = connection.execute(
                "INSERT INTO epochs (room, epoch, first_time) VALUES (%s, %s, 0) RETURNING ord", (room, epoch)
            ).fetchone()[0]  # type: ignore[index]
            with connection.cursor().copy(
                "COPY messages (room, epoch, seq, ord, time, name, text, sender) FROM STDIN"
            ) as copy:
                buffer = io.StringIO()
                for seq in range(1, count + 1):
                    buffer.write(f"{room}\t{epoch}\t{seq}\t{ord}\t{1_700_000_000_000 + seq}\tann\t"
                                 f"message number {seq} of a long day in the room\tu:ann\n")
                    if seq % 100_000 == 0:
                        copy.write(buffer.getvalue())
                        buffer = io.StringIO()
                copy.write(buffer.getvalue())
        connection.execute("VACUUM ANALYZE messages")


def summary(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {"pages": len(ms), "p50_ms": round(statistics.median(ms), 3),
            "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 3), "max_ms": round(ms[-1], 3)}


async def paging(reactor: Any, options: argparse.Namespace) -> dict[str, Any]:
    server = await deferToThread(lambda: PostgresServer(fsync=True).start())
    try:
        url = server.database("bench")
        log = await PostgresLog.connect(url, reactor)
        half = options.messages // 2
        began = time.perf_counter()
        # Two epochs (Redis lost its data once), and a busy neighbour room.
        await deferToThread(fill, url, "big", [("first", half), ("second", options.messages - half)])
        await deferToThread(fill, url, "other", [("x", options.messages // 10)])
        filled = time.perf_counter() - began

        async def walk(before: Head, pages: int) -> list[float]:
            times = []
            for _ in range(pages):
                t = time.perf_counter()
                page = await log.page("big", before, 50)
                times.append(time.perf_counter() - t)
                if not page.more:
                    break
                first = page.messages[0]
                before = Head(str(first.epoch), int(first.seq or 0))
            return times

        await walk(Head("first", 5001), 20)  # warm the connection and the plan
        result = {
            "messages": options.messages, "fill_s": round(filled, 1),
            "far_end": summary(await walk(Head("first", 5001), 100)),  # the oldest 5000 messages
            "across_epochs": summary(await walk(Head("second", 2501), 100)),
            "newest": summary(await walk(Head("second", options.messages - half + 1), 100)),
        }
        with psycopg.connect(url) as connection:
            result["plan"] = "\n".join(row[0] for row in connection.execute(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT epoch, seq FROM messages WHERE room = 'big' AND NOT deleted "
                "AND (ord, seq) < (coalesce((SELECT ord FROM epochs WHERE room = 'big' AND epoch = 'first'), "
                "9223372036854775807), 1001) "
                "ORDER BY ord DESC, seq DESC LIMIT 51"))
            result["table_mb"] = round(connection.execute(
                "SELECT pg_total_relation_size('messages')").fetchone()[0] / 2**20)  # type: ignore[index]
        await log.close()
        return result
    finally:
        await deferToThread(server.destroy)


async def catchup(reactor: Any, options: argparse.Namespace) -> dict[str, Any]:
    server = await deferToThread(lambda: PostgresServer(fsync=True).start())
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="txchat-redis-")))
    await deferToThread(redis.start)
    services = []
    try:
        url = server.database("bench")
        logs = [await PostgresLog.connect(url, reactor) for _ in range(options.feeds)]
        services = [LogFeedService(redis.url, log, reactor, f"feed{i}") for i, log in enumerate(logs)]
        for service in services:
            service.startService()
        raw = await connectRedis(reactor, "127.0.0.1", redis.port, False, 5)
        await deferToThread(server.stop)
        began = time.perf_counter()
        rooms = 20
        for start in range(0, options.messages, 1000):
            await defer.DeferredList([
                raw.command(b"XADD", STREAM, b"*", b"room", f"room{i % rooms}", b"epoch", b"E", b"seq", i // rooms + 1,
                            b"time", 1_700_000_000_000 + i, b"name", "ann", b"text",
                            f"message {i} while the log was away", b"from", "u:ann", b"ref", f"s{i}")
                for i in range(start, min(start + 1000, options.messages))
            ], fireOnOneErrback=True)
        added = time.perf_counter() - began
        waiting = int(await raw.command(b"XLEN", STREAM))
        await task.deferLater(reactor, max(0.0, options.outage - (time.perf_counter() - began)), lambda: None)
        await deferToThread(server.start)
        back = time.perf_counter()
        first = None
        while True:
            written = sum(s.feed.written for s in services)
            if written and first is None:
                first = time.perf_counter()
            if written >= options.messages:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        done = time.perf_counter()
        # The last acknowledgements are on the feeds' connections, unanswered: give them a moment.
        await task.deferLater(reactor, 0.5, lambda: None)
        left = int(await raw.command(b"XLEN", STREAM))
        with psycopg.connect(url) as connection:
            rows = connection.execute("SELECT count(*), count(DISTINCT (room, seq)) FROM messages").fetchone()
        raw.transport.loseConnection()
        assert first is not None
        return {
            "messages": options.messages, "feeds": options.feeds, "outage_s": options.outage,
            "xadd_s": round(added, 2), "waiting_in_redis": waiting,
            "first_write_after_s": round(first - back, 2), "drain_s": round(done - first, 2),
            "rate_per_s": round(options.messages / (done - first)),
            "rate_from_return_per_s": round(options.messages / (done - back)),
            "rows": rows, "stream_left": left,
        }
    finally:
        for service in services:
            await service.stopService()
        await deferToThread(redis.stop)
        await deferToThread(server.destroy)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["paging", "catchup"])
    parser.add_argument("--messages", type=int, default=0, help="1,000,000 for paging, 50,000 for catchup")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds PostgreSQL stays down (catchup)")
    parser.add_argument("--feeds", type=int, default=1, help="feeds (processes) draining the stream (catchup)")
    options = parser.parse_args(argv)
    options.messages = options.messages or (1_000_000 if options.what == "paging" else 50_000)
    run = paging if options.what == "paging" else catchup

    async def go(reactor: Any) -> None:
        print(json.dumps(await run(reactor, options), indent=1))

    task.react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
