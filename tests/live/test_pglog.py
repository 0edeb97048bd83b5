"""The cluster's chat log against a real PostgreSQL (a throwaway server: tests/support/postgres.py)."""

from __future__ import annotations

import threading
from typing import AsyncIterator, cast

import psycopg
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from bench.postgresserver import PostgresServer
from tests.support.live import within
from tests.support.postgres import postgresServer, postgresURL  # noqa: F401  (fixtures)
from txchat.chatlog import Head, LogError
from txchat.pglog import SCHEMA_VERSION, PostgresLog
from txchat.stream import Delivery


def message(seq: int, epoch: str = "e1", room: str = "lobby", time: int = 0, text: bytes | None = None,
            sender: str = "", ref: str | None = None) -> Delivery:
    return Delivery(room, text if text is not None else b"m%d" % seq, "ann", time or 1_000_000 + seq, seq, epoch,
                    sender, ref)


def numbers(messages: list[Delivery]) -> list[tuple[str | None, int | None]]:
    return [(m.epoch, m.seq) for m in messages]


@pytest_twisted.async_yield_fixture
async def log(postgresURL: str) -> AsyncIterator[PostgresLog]:  # noqa: F811
    opened = await PostgresLog.connect(postgresURL, reactor)
    yield opened
    await opened.close()


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(query).fetchall()


@pytest_twisted.ensureDeferred
async def test_schema_is_created_once_and_a_second_open_changes_nothing(postgresURL: str) -> None:  # noqa: F811
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        first = await PostgresLog.connect(postgresURL, reactor)
        await first.write([message(1)])
        await first.close()
        created = [e for e in events if "schema version" in e.get("log_format", "")]
        second = await PostgresLog.connect(postgresURL, reactor)
        page = await second.page("lobby", None, 10)
        await second.close()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert len(created) == SCHEMA_VERSION
    assert len([e for e in events if "schema version" in e.get("log_format", "")]) == SCHEMA_VERSION
    assert rows(postgresURL, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert numbers(page.messages) == [("e1", 1)]
    assert not [t for t in threading.enumerate() if t.name.startswith("txchat-pglog")], "close stops the thread"


@pytest_twisted.ensureDeferred
async def test_a_schema_newer_than_the_code_is_refused(postgresURL: str) -> None:  # noqa: F811
    await (await PostgresLog.connect(postgresURL, reactor)).close()
    with psycopg.connect(postgresURL) as connection:
        connection.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(LogError, match="schema is version 99, newer than this txchat's"):
        await PostgresLog.connect(postgresURL, reactor)


@pytest_twisted.ensureDeferred
async def test_writes_are_idempotent_on_room_epoch_and_seq(log: PostgresLog) -> None:
    assert await log.write([message(i) for i in range(1, 11)]) == 10
    assert await log.write([message(i, text=b"again") for i in range(5, 16)]) == 5
    page = await log.page("lobby", None, 100)
    assert numbers(page.messages) == [("e1", i) for i in range(1, 16)]
    assert page.messages[4].text == b"m5", "a message already there is left as it is"
    assert await log.write([]) == 0


@pytest_twisted.ensureDeferred
async def test_order_is_by_number_not_by_when_written_and_epochs_by_first_written(log: PostgresLog) -> None:
    # Two processes write their batches concurrently: later numbers may arrive first.
    await log.write([message(i) for i in range(6, 11)])
    await log.write([message(i) for i in range(1, 6)])
    # Redis lost its data: a new epoch, written after the first one.
    await log.write([message(i, epoch="e0") for i in range(1, 4)])
    await log.write([message(i, room="other") for i in range(1, 3)])
    page = await log.page("lobby", None, 5)
    assert numbers(page.messages) == [("e1", 9), ("e1", 10), ("e0", 1), ("e0", 2), ("e0", 3)]
    assert page.more
    page = await log.page("lobby", Head("e0", 1), 5)
    assert numbers(page.messages) == [("e1", i) for i in range(6, 11)] and page.more
    page = await log.page("lobby", Head("e1", 6), 5)
    assert numbers(page.messages) == [("e1", i) for i in range(1, 6)] and not page.more
    page = await log.page("lobby", Head("e1", 4), 5)
    assert numbers(page.messages) == [("e1", i) for i in range(1, 4)] and not page.more
    # An epoch not written yet (its messages on their way from Redis) is newer than all.
    assert numbers((await log.page("lobby", Head("unknown", 4), 2)).messages) == [("e0", 2), ("e0", 3)]
    assert numbers((await log.page("other", None, 5)).messages) == [("e1", 1), ("e1", 2)]
    m = (await log.page("lobby", Head("e1", 2), 1)).messages[0]
    assert (m.room, m.text, m.name, m.time, m.sender, m.ref) == ("lobby", b"m1", "ann", 1_000_001, "", None)


@pytest_twisted.ensureDeferred
async def test_a_thousand_messages_page_back_fifty_at_a_time(log: PostgresLog) -> None:
    for start in range(1, 1001, 250):
        await log.write([message(i, text="ü %d".encode() % i) for i in range(start, start + 250)])
    seen: list[Delivery] = []
    before: Head | None = None
    pages = 0
    while True:
        page = await log.page("lobby", before, 50)
        pages += 1
        seen = page.messages + seen
        if not page.more:
            break
        before = Head(cast(str, page.messages[0].epoch), cast(int, page.messages[0].seq))
    assert pages == 20
    assert numbers(seen) == [("e1", i) for i in range(1, 1001)]
    assert seen[-1].text == "ü 1000".encode()


@pytest_twisted.ensureDeferred
async def test_after_recovers_exactly_or_says_it_cannot(log: PostgresLog) -> None:
    await log.write([message(i) for i in range(1, 11)])
    assert numbers(cast(list[Delivery], await log.after("lobby", "e1", 7, 5))) == [("e1", 8), ("e1", 9), ("e1", 10)]
    assert await log.after("lobby", "e1", 10, 5) == []
    assert await log.after("lobby", "e1", 2, 5) is None, "more than the limit"
    assert await log.after("lobby", "e1", 2, 8) is not None
    assert await log.delete("lobby", "e1", 9)
    assert numbers(cast(list[Delivery], await log.after("lobby", "e1", 7, 5))) == [("e1", 8), ("e1", 10)]
    await log.write([message(i) for i in range(12, 14)])  # 11 is missing
    assert await log.after("lobby", "e1", 7, 10) is None
    assert await log.after("lobby", "other", 0, 10) == []


@pytest_twisted.ensureDeferred
async def test_a_deleted_message_stays_deleted_when_the_stream_brings_it_again(log: PostgresLog) -> None:
    await log.write([message(i, sender="u:ann", ref=f"r{i}") for i in range(1, 4)])
    assert await log.delete("lobby", "e1", 2) is True
    assert await log.delete("lobby", "e1", 2) is False
    assert await log.delete("lobby", "e1", 99) is False
    assert await log.write([message(2)]) == 0
    assert numbers((await log.page("lobby", None, 10)).messages) == [("e1", 1), ("e1", 3)]
    assert await log.sent("u:ann", "r2", 0) is None, "a deleted message's send ID is forgotten"


@pytest_twisted.ensureDeferred
async def test_sent_finds_a_send_by_its_id(log: PostgresLog) -> None:
    await log.write([message(7, sender="u:ann", ref="abc", time=5000)])
    assert await log.sent("u:ann", "abc", 5000) == Head("e1", 7)
    assert await log.sent("u:ann", "abc", 5001) is None
    assert await log.sent("u:bob", "abc", 0) is None


@pytest_twisted.ensureDeferred
async def test_read_positions_never_go_back_across_epochs(log: PostgresLog) -> None:
    await log.write([message(i) for i in range(1, 6)])
    assert await log.read("u:ann", "lobby") is None
    assert await log.setRead("u:ann", "lobby", Head("e1", 3)) == Head("e1", 3)
    assert await log.setRead("u:ann", "lobby", Head("e1", 2)) == Head("e1", 3)
    assert await log.setRead("u:ann", "lobby", Head("e1", 5)) == Head("e1", 5)
    # A newer epoch the log has not been written yet (its messages still on their way from Redis).
    assert await log.setRead("u:ann", "lobby", Head("e0", 1)) == Head("e0", 1)
    assert await log.setRead("u:ann", "lobby", Head("e1", 5000)) == Head("e0", 1), "an older epoch is behind"
    await log.write([message(i, epoch="e0") for i in range(1, 3)])
    assert numbers((await log.page("lobby", None, 3)).messages) == [("e1", 5), ("e0", 1), ("e0", 2)]
    assert await log.read("u:ann", "lobby") == Head("e0", 1)
    assert await log.read("u:bob", "lobby") is None


@pytest_twisted.ensureDeferred
async def test_prune_deletes_what_is_older(log: PostgresLog) -> None:
    await log.write([message(i, time=i * 1000) for i in range(1, 11)])
    assert await log.prune(4000) == 3
    assert numbers((await log.page("lobby", None, 100)).messages) == [("e1", i) for i in range(4, 11)]
    assert await log.after("lobby", "e1", 0, 100) is None, "pruned numbers are missing, not deleted"


@pytest_twisted.ensureDeferred
async def test_text_postgresql_cannot_hold_does_not_stop_the_log(log: PostgresLog) -> None:
    assert await log.write([message(1, text=b"a\x00b")]) == 1
    assert (await log.page("lobby", None, 1)).messages[0].text == "a\ufffdb".encode()


@pytest_twisted.ensureDeferred
async def test_a_wrong_password_fails_fast_with_a_short_reason(postgresServer: PostgresServer) -> None:  # noqa: F811
    with pytest.raises(LogError) as caught:
        await PostgresLog.connect(postgresServer.url(password="wrong"), reactor)
    assert str(caught.value) == 'password authentication failed for user "txchat"'
    with pytest.raises(LogError) as caught:
        PostgresLog.connectNow(postgresServer.url(password="wrong"), reactor)
    assert str(caught.value) == 'password authentication failed for user "txchat"'
    with pytest.raises(LogError, match='database "nothere" does not exist'):
        await PostgresLog.connect(postgresServer.url(database="nothere"), reactor)
    assert not [t for t in threading.enumerate() if t.name.startswith("txchat-pglog")]


@pytest_twisted.ensureDeferred
async def test_a_log_whose_server_restarted_reconnects_by_itself(postgresURL: str,  # noqa: F811
                                                               postgresServer: PostgresServer) -> None:  # noqa: F811
    log = await PostgresLog.connect(postgresURL, reactor)
    try:
        await log.write([message(1)])
        postgresServer.stop()
        with pytest.raises(LogError):
            await log.write([message(2)])
        postgresServer.start()
        assert await log.write([message(2)]) == 1
    finally:
        await log.close()


@pytest_twisted.ensureDeferred
async def test_a_server_that_hangs_is_a_lost_connection_after_the_timeout(postgresURL: str,  # noqa: F811
                                                                         postgresServer: PostgresServer) -> None:  # noqa: F811
    log = await PostgresLog.connect(postgresURL, reactor, timeout=1.0)
    try:
        await log.write([message(1)])
        postgresServer.pause()
        try:
            began = reactor.seconds()
            with pytest.raises(LogError, match="no answer from PostgreSQL for 1s"):
                await within(log.write([message(2)]), 10)
            assert reactor.seconds() - began < 5
        finally:
            postgresServer.resume()
        assert await log.write([message(2)]) == 1, "connected again"
        assert numbers((await log.page("lobby", None, 5)).messages) == [("e1", 1), ("e1", 2)]
    finally:
        await log.close()
