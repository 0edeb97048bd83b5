"""A property of the memory broker over the SQLite log (SPEC §16): any interleaving of sends,
restarts (clean, and killed on the same boot), joins with since and scrollback pages gives one
numbering per epoch with no gap and no duplicate, exact recovery, and scrollback equal to what
was delivered."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from txchat.broker import MemoryBroker
from txchat.chatlog import Page
from txchat.sqlitelog import SqliteLog
from txchat.stream import Delivery, Snapshot

ROOMS = ("a", "b")
_operations = st.lists(st.one_of(
    st.tuples(st.just("send"), st.sampled_from(ROOMS), st.integers(1, 4)),
    st.tuples(st.just("restart"), st.sampled_from(["clean", "killed"])),
    st.tuples(st.just("join"), st.sampled_from(ROOMS), st.integers(0, 30)),
    st.tuples(st.just("pages"), st.sampled_from(ROOMS), st.integers(1, 7)),
), max_size=40)


def killed(log: SqliteLog) -> None:
    """As SIGKILL on the same boot: the file and what was committed stay, no clean mark."""
    connection = log._connection  # noqa: SLF001 - a crash, which no public call makes
    if connection is not None:
        connection.close()
    os.close(log._lockFd)  # noqa: SLF001


def answer(d: Any) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    (result,) = got
    return result


class Process:
    def __init__(self, path: Path) -> None:
        self.clock = Clock()
        self.log = SqliteLog(str(path), bootId=lambda: "one boot")
        self.broker = MemoryBroker(self.clock, 3, 3600, self.log, recoveryMax=10)
        self.delivered: list[Delivery] = []
        self.broker.start(self.delivered.append, lambda room, process, count: None)


@settings(max_examples=60, deadline=None)
@given(_operations)
def test_any_interleaving_keeps_one_numbering_exact_recovery_and_the_whole_scrollback(operations: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chat.sqlite3"
        process = Process(path)
        seen: list[Delivery] = []  # everything delivered, in order, across restarts
        sent = 0
        try:
            for operation in operations:
                kind = operation[0]
                if kind == "send":
                    _, room, count = operation
                    for _ in range(count):
                        sent += 1
                        process.broker.publish(Delivery(room, b"m%d" % sent, "", 1000 + sent))
                    process.clock.advance(0)
                elif kind == "restart":
                    seen += process.delivered
                    process.delivered.clear()
                    if operation[1] == "clean":
                        answer(process.broker.stop())
                        process.log.close()
                    else:
                        killed(process.log)
                    process = Process(path)
                elif kind == "join":
                    _, room, back = operation
                    _checkJoin(process, seen + process.delivered, room, back)
                else:
                    _, room, size = operation
                    _checkPages(process, seen + process.delivered, room, size)
            seen += process.delivered
            process.delivered.clear()
            for room in ROOMS:
                mine = [m for m in seen if m.room == room]
                # One numbering: consecutive from 1 in each epoch, every text once.
                byEpoch: dict[str, list[int]] = {}
                for m in mine:
                    assert m.epoch is not None and m.seq is not None
                    byEpoch.setdefault(m.epoch, []).append(m.seq)
                assert len({m.text for m in mine}) == len(mine)
                # On one boot the log goes on: a room keeps one epoch for its whole life.
                assert len(byEpoch) <= 1
                for numbers in byEpoch.values():
                    assert numbers == list(range(1, len(numbers) + 1))
        finally:
            if not process.log._closed:  # noqa: SLF001
                process.log.close()


def _checkJoin(process: Process, seen: list[Delivery], room: str, back: int) -> None:
    mine = [m for m in seen if m.room == room]
    if not mine:
        return
    last = mine[-1]
    assert last.epoch is not None and last.seq is not None
    since = max(0, last.seq - back)
    process.broker.watch(room)
    snapshot = answer(process.broker.snapshot(room, (last.epoch, since)))
    assert isinstance(snapshot, Snapshot) and (snapshot.epoch, snapshot.seq) == (last.epoch, last.seq)
    missed = [m.text for m in snapshot.history if m.seq is not None and m.seq > since]
    if back <= 10 or [m.seq for m in snapshot.history][:1] == [since + 1]:  # within --recovery-max: exact
        assert missed == [m.text for m in mine if m.seq is not None and m.seq > since]
    else:
        assert len(snapshot.history) == min(3, len(mine)), "beyond --recovery-max: the newest --history"
    process.broker.unwatch(room)


def _checkPages(process: Process, seen: list[Delivery], room: str, size: int) -> None:
    walked: list[bytes] = []
    before = None
    while True:
        page = answer(process.broker.page(room, before, size))
        assert isinstance(page, Page)
        walked[:0] = [m.text for m in page.messages]
        if not page.more:
            break
        first = page.messages[0]
        assert first.epoch is not None and first.seq is not None
        before = (first.epoch, first.seq)
    assert walked == [m.text for m in seen if m.room == room]
