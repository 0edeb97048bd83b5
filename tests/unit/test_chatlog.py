"""The chat log's contract (txchat.chatlog), on every store of one process: the memory log
and the SQLite log answer every question alike, here and in the property test at the end."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txchat.chatlog import ChatLog, Head, Page
from txchat.memorylog import MemoryLog
from txchat.stream import Delivery
from tests.support.chatlogs import KINDS, key, keys, makeLog, message, walk


@pytest.fixture(params=KINDS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChatLog]:
    made = makeLog(request.param, tmp_path)
    yield made
    made.close()


def seqs(messages: list[Delivery] | None) -> list[tuple[str | None, int | None]] | None:
    return None if messages is None else [(m.epoch, m.seq) for m in messages]


def test_pages_go_back_across_epochs_in_the_order_written(log: ChatLog) -> None:
    log.append([message("r", "A", n) for n in (1, 2, 3)])
    log.append([message("r", "B", 1), message("other", "X", 1), message("r", "B", 2)])
    log.append([message("r", "A", 4)])  # an old epoch written late: it is where it was written
    page = log.page("r", None, 3)
    assert seqs(page.messages) == [("B", 1), ("B", 2), ("A", 4)] and page.more
    page = log.page("r", Head("B", 1), 3)
    assert seqs(page.messages) == [("A", 1), ("A", 2), ("A", 3)] and not page.more
    assert seqs(walk(log, "r", 2)) == [("A", 1), ("A", 2), ("A", 3), ("B", 1), ("B", 2), ("A", 4)]
    assert log.page("nowhere", None, 50) == Page([], False)
    assert log.page("r", None, 0) == Page([], True)


def test_heads_are_each_rooms_newest_epoch_and_its_newest_number(log: ChatLog) -> None:
    assert log.heads() == {}
    log.append([message("r", "A", 1), message("r", "A", 2), message("s", "C", 7)])
    log.append([message("r", "B", 1)])
    log.append([message("r", "A", 3)])  # A is older than B however late it is written
    assert log.heads() == {"r": Head("B", 1), "s": Head("C", 7)}


def test_a_message_written_twice_is_kept_once_as_first_written(log: ChatLog) -> None:
    first = message("r", "A", 1, text="first", ref="x1")
    log.append([first, message("r", "A", 2)])
    log.append([message("r", "A", 1, text="again", ref="x2"), message("r", "A", 2), message("r", "A", 3)])
    assert keys(log.page("r", None, 10).messages) == keys([first, message("r", "A", 2), message("r", "A", 3)])
    assert log.heads() == {"r": Head("A", 3)}
    assert log.sent("a:me", "x2", 0) is None


def test_messages_without_a_number_are_not_kept(log: ChatLog) -> None:
    log.append([message("r", None, None), message("r", "A", None)])
    log.append([])
    assert log.heads() == {} and log.page("r", None, 10) == Page([], False)


def test_text_names_and_senders_come_back_as_written(log: ChatLog) -> None:
    written = message("r", "A", 1, text="two\nlines, ünïcødé, 😀, \u202eRTL", sender="u:sub", ref="id-1",
                      name="Zoë", time=1_700_000_000_123)
    log.append([written])
    (back,) = log.recent("r", "A", 5)
    assert key(back) == key(written) and back.line == written.line


def test_recent_is_the_newest_of_one_epoch_oldest_first(log: ChatLog) -> None:
    log.append([message("r", "A", n) for n in range(1, 6)] + [message("r", "B", 1)])
    assert seqs(log.recent("r", "A", 2)) == [("A", 4), ("A", 5)]
    assert seqs(log.recent("r", "A", 50)) == [("A", n) for n in range(1, 6)]
    assert log.recent("r", "A", 0) == [] and log.recent("r", "Z", 5) == [] and log.recent("q", "A", 5) == []


def test_after_gives_what_was_missed_or_none(log: ChatLog) -> None:
    log.append([message("r", "A", n) for n in range(1, 6)])
    assert seqs(log.after("r", "A", 2, 10)) == [("A", 3), ("A", 4), ("A", 5)]
    assert seqs(log.after("r", "A", 0, 5)) == [("A", n) for n in range(1, 6)]
    assert log.after("r", "A", 5, 10) == []
    assert log.after("r", "A", 0, 4) is None, "more than the limit"
    assert log.after("r", "A", 6, 10) is None, "a number the log never had"
    assert log.after("r", "B", 0, 10) is None and log.after("q", "A", 0, 10) is None


def test_after_is_none_when_the_log_lacks_a_number(log: ChatLog) -> None:
    log.append([message("r", "A", 1), message("r", "A", 2), message("r", "A", 4)])  # 3 was never written
    assert log.after("r", "A", 3, 10) is not None
    assert log.after("r", "A", 2, 10) is None and log.after("r", "A", 0, 10) is None


def test_a_deleted_message_is_gone_and_its_number_stays_used(log: ChatLog) -> None:
    log.append([message("r", "A", n, ref=f"id{n}") for n in range(1, 5)])
    assert log.delete("r", "A", 4) and log.delete("r", "A", 2)
    assert not log.delete("r", "A", 2) and not log.delete("r", "A", 9) and not log.delete("r", "Z", 1)
    assert seqs(log.page("r", None, 10).messages) == [("A", 1), ("A", 3)]
    assert seqs(log.recent("r", "A", 10)) == [("A", 1), ("A", 3)]
    # Recovery skips what was deleted; numbering goes on after the deleted newest.
    assert seqs(log.after("r", "A", 1, 10)) == [("A", 3)] and log.after("r", "A", 3, 10) == []
    assert log.heads() == {"r": Head("A", 4)}
    assert log.sent("a:me", "id2", 0) is None
    log.append([message("r", "A", 2, ref="id2")])  # a late copy does not bring it back
    assert seqs(log.page("r", None, 10).messages) == [("A", 1), ("A", 3)]


def test_a_page_before_a_message_that_is_gone_ends_where_it_was(log: ChatLog) -> None:
    log.append([message("r", "A", n) for n in range(1, 7)])
    log.delete("r", "A", 4)
    assert seqs(log.page("r", Head("A", 4), 2).messages) == [("A", 2), ("A", 3)]
    log.delete("r", "A", 5)
    log.delete("r", "A", 6)
    assert seqs(log.page("r", Head("A", 5), 10).messages) == [("A", 1), ("A", 2), ("A", 3)]
    assert seqs(log.page("r", Head("A", 99), 10).messages) == [("A", 1), ("A", 2), ("A", 3)]
    assert log.page("r", Head("Z", 1), 10) == Page([], False)


def test_sent_finds_a_resend_within_its_window(log: ChatLog) -> None:
    log.append([message("r", "A", 1, time=1000, sender="a:me", ref="x"),
                message("r", "A", 2, time=5000, sender="a:you", ref="x"),
                message("q", "B", 9, time=6000, sender="a:me", ref="y")])
    assert log.sent("a:me", "x", 1000) == Head("A", 1)
    assert log.sent("a:me", "x", 1001) is None, "accepted before notBefore"
    assert log.sent("a:you", "x", 0) == Head("A", 2)
    assert log.sent("a:me", "y", 0) == Head("B", 9)
    assert log.sent("a:me", "z", 0) is None and log.sent("a:them", "x", 0) is None


def test_a_read_position_never_goes_back(log: ChatLog) -> None:
    log.append([message("r", "A", n) for n in range(1, 4)] + [message("r", "B", 1), message("r", "B", 2)])
    assert log.read("u:ada", "r") is None
    assert log.setRead("u:ada", "r", Head("A", 2)) == Head("A", 2)
    assert log.setRead("u:ada", "r", Head("A", 1)) == Head("A", 2)
    assert log.setRead("u:ada", "r", Head("B", 1)) == Head("B", 1), "a later epoch is newer"
    assert log.setRead("u:ada", "r", Head("A", 3)) == Head("B", 1), "whatever its number"
    assert log.setRead("u:ada", "r", Head("N", 1)) == Head("N", 1), "an epoch not in the log yet is newer"
    assert log.setRead("u:ada", "r", Head("B", 2)) == Head("N", 1)
    assert log.read("u:ada", "r") == Head("N", 1)
    assert log.read("u:ada", "q") is None and log.read("u:bob", "r") is None
    assert log.setRead("u:bob", "r", Head("A", 1)) == Head("A", 1)


def test_prune_deletes_what_is_older_and_recovery_over_it_fails(log: ChatLog) -> None:
    log.append([message("r", "A", n, time=n * 1000, ref=f"id{n}") for n in range(1, 6)])
    log.delete("r", "A", 1)
    assert log.prune(1000) == 0
    assert log.prune(3000) == 1, "one: the first was deleted already"
    assert seqs(log.page("r", None, 10).messages) == [("A", 3), ("A", 4), ("A", 5)]
    assert log.after("r", "A", 1, 10) is None, "2 is gone, not deleted"
    assert seqs(log.after("r", "A", 2, 10)) == [("A", 3), ("A", 4), ("A", 5)]
    assert log.sent("a:me", "id2", 0) is None and log.sent("a:me", "id3", 0) == Head("A", 3)
    assert log.heads() == {"r": Head("A", 5)}, "numbering goes on"
    assert log.prune(10_000) == 3 and log.page("r", None, 10) == Page([], False)
    assert log.heads() == {"r": Head("A", 5)}


def test_what_was_deleted_stays_deleted_after_a_prune(log: ChatLog) -> None:
    log.append([message("r", "A", 1, time=1000), message("r", "A", 2, time=1000), message("r", "A", 3, time=5000)])
    log.delete("r", "A", 2)
    assert log.prune(2000) == 1
    log.append([message("r", "A", 2, time=1000)])  # a late copy
    assert seqs(log.page("r", None, 10).messages) == [("A", 3)]
    assert seqs(log.after("r", "A", 1, 10)) == [("A", 3)], "a client at 1 missed only 3"


def test_durable_says_whether_it_outlives_the_process(log: ChatLog) -> None:
    assert log.durable == (not isinstance(log, MemoryLog))


# -- the property: both stores answer alike, and paging back gives the whole log ------------------

# Few rooms, epochs and numbers, so that writes repeat, deletes hit and appends come back.
_rooms = st.sampled_from(["r", "s"])
_epochs = st.sampled_from(["A", "B", "C"])
_seqs = st.integers(0, 4)
_messages = st.builds(
    message, _rooms, _epochs, st.integers(1, 4), st.integers(0, 10),
    sender=st.sampled_from(["a:1", "a:2"]), ref=st.sampled_from([None, "x", "y"]),
)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(_messages, max_size=6)),
        st.tuples(st.just("delete"), _rooms, _epochs, _seqs),
        st.tuples(st.just("deleteKept"), st.integers(0, 50)),  # the n-th message kept
        st.tuples(st.just("again"), st.integers(0, 50)),  # the n-th message appended, appended again
        st.tuples(st.just("restart")),  # the SQLite log closed and opened again
        st.tuples(st.just("prune"), st.integers(0, 6)),
        st.tuples(st.just("read"), st.sampled_from(["u:1", "u:2"]), _rooms, _epochs, _seqs),
    ),
    max_size=30,
)
_queries = st.lists(st.tuples(_rooms, _epochs, _seqs, st.integers(0, 8)), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(_operations, _queries)
def test_both_stores_answer_alike_and_pages_walk_the_whole_log(
    operations: list[tuple[object, ...]], queries: list[tuple[str, str, int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        logs = [makeLog(kind, Path(directory)) for kind in KINDS]
        written: list[tuple[object, ...]] = []  # a model: what is kept, in write order
        deleted: set[tuple[object, ...]] = set()
        try:
            appended: list[Delivery] = []
            for operation in operations:
                kind, *args = operation
                if kind == "deleteKept":
                    if not written:
                        continue
                    kind, args = "delete", list(written[args[0] % len(written)][:3])  # type: ignore[operator]
                elif kind == "again":
                    if not appended:
                        continue
                    kind, args = "append", [[appended[args[0] % len(appended)]]]  # type: ignore[operator]
                if kind == "restart":
                    logs[1].close()
                    logs[1] = makeLog(KINDS[1], Path(directory))
                    continue
                if kind == "append":
                    appended.extend(args[0])  # type: ignore[arg-type]
                answers: list[object] = []
                for log in logs:
                    if kind == "append":
                        log.append(args[0])  # type: ignore[arg-type]
                        answers.append(None)
                    elif kind == "delete":
                        answers.append(log.delete(*args))  # type: ignore[arg-type]
                    elif kind == "prune":
                        answers.append(log.prune(*args))  # type: ignore[arg-type]
                    else:
                        identity, room, epoch, seq = args
                        answers.append(log.setRead(identity, room, Head(epoch, seq)))  # type: ignore[arg-type]
                assert answers[0] == answers[1], operation
                if kind == "append":
                    for m in args[0]:  # type: ignore[attr-defined]
                        k = (m.room, m.epoch, m.seq)
                        if k not in deleted and all(w[:3] != k for w in written):
                            written.append(key(m))
                elif kind == "delete" and answers[0]:
                    deleted.add(tuple(args))
                    written = [w for w in written if w[:3] != tuple(args)]
                elif kind == "prune":
                    written = [w for w in written if w[3] >= args[0]]  # type: ignore[operator]
            assert logs[0].heads() == logs[1].heads()
            for room in ("r", "s"):
                whole = [w for w in written if w[0] == room]
                for limit in (1, 2, 5):
                    assert keys(walk(logs[0], room, limit)) == whole
                    assert keys(walk(logs[1], room, limit)) == whole
            for room, epoch, seq, limit in queries:
                for ask in (
                    lambda log: keys(log.after(room, epoch, seq, limit)),
                    lambda log: keys(log.recent(room, epoch, limit)),
                    lambda log: keys(log.page(room, Head(epoch, seq), limit).messages),
                    lambda log: log.page(room, Head(epoch, seq), limit).more,
                    lambda log: log.sent("a:1", "x", seq),
                    lambda log: log.read("u:1", room),
                ):
                    assert ask(logs[0]) == ask(logs[1]), (room, epoch, seq, limit)
        finally:
            for log in logs:
                log.close()
