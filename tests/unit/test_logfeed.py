"""The feed from Redis's stream to the chat log, step by step on a task.Clock: the commands it
sends, the replies it gets, and a log whose writes the test completes (a real redis-server and
PostgreSQL: tests/system/cluster/test_logfeed.py)."""

from __future__ import annotations

from typing import Any, Iterator, Sequence, cast

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from tests.support.fakeredis import Link
from txchat.chatlog import LogError
from txchat.logfeed import LogFeed, entry
from txchat.redisclient import RedisConnection
from txchat.stream import Delivery

NIL = b"*-1\r\n"


def fields(seq: int, room: str = "lobby", ref: str | None = None) -> list[bytes]:
    f = [b"room", room.encode(), b"epoch", b"E", b"seq", b"%d" % seq, b"time", b"1000", b"name", b"ann",
         b"text", b"hi %d" % seq, b"from", b"u:ann"]
    return f + [b"ref", ref.encode()] if ref is not None else f


def read(*seqs: int) -> list[Any]:
    return [[b"txchat:log", [[b"%d-0" % seq, fields(seq)] for seq in seqs]]]


class Writer:
    """A log whose writes wait for the test."""

    where = "db:5432"

    def __init__(self) -> None:
        self.writes: list[tuple[list[Delivery], Deferred[int]]] = []

    def write(self, batch: Sequence[Delivery]) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        self.writes.append((list(batch), d))
        return d

    def seqs(self, index: int = -1) -> list[int | None]:
        return [m.seq for m in self.writes[index][0]]


class Setup:
    def __init__(self, **options: Any) -> None:
        self.clock = Clock()
        self.writer = Writer()
        self.links: list[Link] = []
        options.setdefault("retryDelay", lambda attempt: 1.0 + attempt)
        self.feed = LogFeed(self.writer, self._connect, self.clock, "a", **options)

    def _connect(self) -> Deferred[RedisConnection]:
        connection = RedisConnection()
        transport = StringTransport()
        connection.makeConnection(transport)
        self.links.append(Link(connection, transport))
        return succeed(connection)

    @property
    def link(self) -> Link:
        return self.links[-1]

    def start(self) -> Link:
        """Start, connected, with the group there; its first read (own pending entries) sent."""
        self.feed.start()
        assert self.link.commands() == [[b"XGROUP", b"CREATE", b"txchat:log", b"txchat-log", b"0", b"MKSTREAM"]]
        self.link.connection.dataReceived(b"-BUSYGROUP Consumer Group name already exists\r\n")
        return self.link

    def reading(self, since: bytes = b"0") -> None:
        sent = self.link.commands()
        assert sent == [[b"XREADGROUP", b"GROUP", b"txchat-log", b"a", b"COUNT", b"500", b"STREAMS", b"txchat:log",
                         since], [b"XLEN", b"txchat:log"]], sent

    def onNew(self) -> None:
        """From a started feed reading its own pending entries to one reading new ones."""
        self.reading()
        self.link.reply([[b"txchat:log", []]], 0)
        self.reading(b">")


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    seen: list[LogEvent] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


def said(events: list[LogEvent], words: str) -> int:
    return len([e for e in events if words in e.get("log_format", "")])


def test_entry_reads_what_the_numbering_script_adds() -> None:
    assert entry(fields(3, ref="s1")) == Delivery("lobby", b"hi 3", "ann", 1000, 3, "E", "u:ann", "s1")
    assert entry(fields(3)) == Delivery("lobby", b"hi 3", "ann", 1000, 3, "E", "u:ann", None)
    assert entry([b"room", b"r", b"epoch", b"E", b"seq", b"1", b"time", b"5", b"name", b"", b"text", b""]) == \
        Delivery("r", b"", "", 5, 1, "E", "", None)
    for bad in ([], fields(3)[2:], [b"room", b"r", b"epoch", b"E", b"seq", b"x", b"time", b"5", b"name", b"",
                                    b"text", b""], [b"room", b"\xff", *fields(1)[2:]]):
        assert entry(bad) is None


def test_own_pending_entries_first_then_new_ones_each_acknowledged_and_deleted_once_written() -> None:
    s = Setup()
    link = s.start()
    s.reading(b"0")
    link.reply(read(4, 5), 7)
    assert s.writer.seqs() == [4, 5] and s.feed.state == "writing" and s.feed.waiting == 7
    assert link.commands() == []
    s.writer.writes[-1][1].callback(2)
    sent = link.commands()
    assert sent[:2] == [[b"XACK", b"txchat:log", b"txchat-log", b"4-0", b"5-0"], [b"XDEL", b"txchat:log", b"4-0", b"5-0"]]
    link.reply(2, 2)
    # On from where the last read of pending entries ended, until there are none.
    link.transport.write(b"".join(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in c)
                                  for c in sent[2:]))
    s.reading(b"5-0")
    link.reply([[b"txchat:log", []]], 5)
    s.reading(b">")
    link.connection.dataReceived(NIL + b":0\r\n")
    assert s.feed.state == "idle"
    assert link.commands() == []
    s.clock.advance(0.2)
    s.reading(b">")
    link.reply(read(6), 1)
    s.writer.writes[-1][1].callback(1)
    assert s.feed.written == 3
    d = s.feed.stop()
    link.lose()
    assert d.called and s.clock.getDelayedCalls() == []


def test_a_full_batch_is_followed_at_once_a_short_one_after_the_poll() -> None:
    s = Setup(count=2)
    link = s.start()
    link.commands()
    link.reply([[b"txchat:log", []]], 0)
    link.commands()
    link.reply(read(1, 2), 5)
    s.writer.writes[-1][1].callback(2)
    sent = link.commands()
    assert sent[-2][0] == b"XREADGROUP" and sent[-2][-1] == b">", "straight on"
    s.feed.stop()
    link.lose()


def test_postgresql_refusing_keeps_the_batch_retries_with_backoff_and_says_so_once(events: list[LogEvent]) -> None:
    s = Setup()
    link = s.start()
    s.onNew()
    link.reply(read(1, 2), 2)
    for attempt in range(3):
        s.writer.writes[-1][1].errback(LogError("Connection refused"))
        assert not s.feed.logUp and s.feed.state == "idle"
        assert link.commands() == [], "nothing acknowledged, nothing more read"
        s.clock.advance(1.0 + attempt - 0.01)
        assert len(s.writer.writes) == attempt + 1
        s.clock.advance(0.01)
        assert s.writer.seqs() == [1, 2], "the same batch again"
        assert link.commands() == [[b"XLEN", b"txchat:log"]], "what waits is counted meanwhile"
        link.reply(40 + attempt)
        assert s.feed.waiting == 40 + attempt
    assert said(events, "cannot be written") == 1
    events.clear()
    s.writer.writes[-1][1].callback(2)
    assert s.feed.logUp
    assert said(events, "is written again") == 1 and said(events, "cannot be written") == 0
    assert link.commands()[:2] == [[b"XACK", b"txchat:log", b"txchat-log", b"1-0", b"2-0"],
                                  [b"XDEL", b"txchat:log", b"1-0", b"2-0"]]
    s.feed.stop()
    link.lose()


def test_entries_left_by_a_dead_consumer_are_claimed_every_few_seconds(events: list[LogEvent]) -> None:
    s = Setup(claimIdle=30.0, claimEvery=5.0)
    link = s.start()
    s.onNew()
    s.clock.advance(5.0)
    link.connection.dataReceived(NIL + b":0\r\n")
    s.clock.advance(0.2)  # the next poll: claims, now that 5 s have passed
    sent = link.commands()
    assert sent[0] == [b"XAUTOCLAIM", b"txchat:log", b"txchat-log", b"a", b"30000", b"0-0", b"COUNT", b"500"]
    link.reply([b"9-0", [[b"7-0", fields(7)]], []], 1)
    assert s.writer.seqs() == [7] and said(events, "took over") == 1
    s.writer.writes[-1][1].callback(1)
    sent = link.commands()
    assert sent[2][0] == b"XAUTOCLAIM" and sent[2][5] == b"9-0", "on from where the last claim ended"
    link.reply(1, 1, [b"0-0", [], [b"8-0"]], 0)  # the end: the next claim in 5 s
    s.clock.advance(0.2)
    assert link.commands()[0][-1] == b">"
    s.feed.stop()
    link.lose()


def test_an_entry_that_is_not_a_message_is_dropped_and_counted(events: list[LogEvent]) -> None:
    s = Setup()
    link = s.start()
    s.onNew()
    link.reply([[b"txchat:log", [[b"1-0", [b"hello", b"world"]], [b"2-0", fields(2)]]]], 2)
    assert link.commands()[:2] == [[b"XACK", b"txchat:log", b"txchat-log", b"1-0"], [b"XDEL", b"txchat:log", b"1-0"]]
    assert s.writer.seqs() == [2] and s.feed.malformed == 1 and said(events, "not a numbered message") == 1
    s.writer.writes[-1][1].callback(1)
    s.feed.stop()
    link.lose()


def test_redis_lost_mid_write_pauses_then_reads_own_pending_entries_again() -> None:
    s = Setup()
    link = s.start()
    s.onNew()
    link.reply(read(1), 1)
    link.lose()
    assert s.feed.state == "connecting"
    s.writer.writes[-1][1].callback(1)  # written; the acknowledgement cannot be sent
    assert link.commands() == []
    s.clock.advance(1.0)
    assert len(s.links) == 2
    assert s.link.commands()[0][0] == b"XGROUP"
    s.link.reply("OK")
    s.reading(b"0")  # pending entries first: written again, harmlessly
    s.feed.stop()
    s.link.lose()
    assert s.clock.getDelayedCalls() == []


def test_a_stream_gone_with_its_group_is_made_again() -> None:
    s = Setup()
    link = s.start()
    s.onNew()
    link.connection.dataReceived(b"-NOGROUP No such key 'txchat:log' or consumer group 'txchat-log'\r\n:0\r\n")
    assert link.commands() == [[b"XGROUP", b"CREATE", b"txchat:log", b"txchat-log", b"0", b"MKSTREAM"]]
    link.reply("OK")
    s.reading(b"0")
    s.feed.stop()
    link.lose()


def test_stop_waits_for_the_write_in_flight_and_leaves_the_entries_pending() -> None:
    s = Setup()
    link = s.start()
    s.onNew()
    link.reply(read(1), 1)
    d = s.feed.stop()
    assert not d.called
    s.writer.writes[-1][1].callback(1)
    assert not d.called, "until the connection is closed"
    link.lose()
    assert d.called and s.clock.getDelayedCalls() == []
