"""RoomStream, one transition a row: a starting state, inputs, and what the members here are
sent (L{Outlet}), what a joiner may be given, and the state after."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from txchat.stream import FOLLOWING, LOCAL, SYNCING, Delivery, RoomStream, Snapshot, joinLines


class Recorder:
    """The outlet: what the room's members here would be sent, as (kind, epoch, seq)."""

    def __init__(self) -> None:
        self.out: list[tuple[str, str | None, int | None]] = []

    def send(self, message: Delivery) -> None:
        self.out.append(("send", message.epoch, message.seq))

    def tell(self, epoch: str, seq: int) -> None:
        self.out.append(("tell", epoch, seq))


def m(seq: int | None, epoch: str | None = "E") -> Delivery:
    return Delivery("r", b"t%s" % str(seq).encode(), "", 1000, seq, None if seq is None else epoch)


def snap(epoch: str | None, seq: int, kept: Iterable[int] = (), others: dict[str, int] | None = None) -> Snapshot:
    return Snapshot(epoch, seq, [m(n, epoch) for n in kept], others or {})


def start(state: str) -> tuple[RoomStream, Recorder]:
    """"local": epoch L, nothing numbered; "E:3": following E, at 3; "E:3 syncing"."""
    out = Recorder()
    stream = RoomStream("L", out)
    if state != "local":
        at, _, syncing = state.partition(" ")
        epoch, seq = at.split(":")
        stream.delivered(m(int(seq), epoch))
        if syncing:
            assert stream.catchingUp()
    out.out.clear()
    return stream, out


def run(stream: RoomStream, steps: list[tuple[Any, ...]]) -> list[Any]:
    """Apply the inputs; return what the inputs that answer (read, catchingUp, caughtUp) answered."""
    answers: list[Any] = []
    for step in steps:
        kind, *args = step
        if kind == "deliver":
            stream.delivered(m(*args))
        elif kind == "reading":
            stream.reading()
        elif kind == "read":
            answers.append([d.seq for d in stream.read(*args)])
        elif kind == "catchingUp":
            answers.append(stream.catchingUp())
        elif kind == "wait":
            stream.waiting.append(args[0])
        elif kind == "caughtUp":
            kept, waiting = stream.caughtUp(args[0])
            answers.append(([d.seq for d in kept], waiting))
        elif kind == "abandon":
            stream.abandon()
        else:
            raise AssertionError(kind)
    return answers


# (transition, starting state, inputs, sent to the members here, answers, state after as "state epoch:seq")
TRANSITIONS = [
    ("local: an unnumbered message goes out, nothing else changes",
     "local", [("deliver", None)], [("send", None, None)], [], "local L:0"),
    ("local: the broker's first number brings its epoch, after a welcome",
     "local", [("deliver", 1, "E")], [("tell", "E", 0), ("send", "E", 1)], [], "following E:1"),
    ("following: the next number goes out",
     "E:3", [("deliver", 4)], [("send", "E", 4)], [], "following E:4"),
    ("following: a number already had (from a snapshot) is not sent again",
     "E:3", [("deliver", 3), ("deliver", 2)], [], [], "following E:3"),
    ("following: an unnumbered message (broker away) keeps the numbers",
     "E:3", [("deliver", None)], [("send", None, None)], [], "following E:3"),
    ("following: a number past the next, numbers this process never had: told before it",
     "E:3", [("deliver", 6), ("deliver", 7)], [("tell", "E", 5), ("send", "E", 6), ("send", "E", 7)], [],
     "following E:7"),
    ("following: a stream that started over is told before its first message",
     "E:3", [("deliver", 1, "F")], [("tell", "F", 0), ("send", "F", 1)], [], "following F:1"),
    ("join read: the stream takes the broker's epoch and numbers (a welcome for v1 members, if any)",
     "local", [("reading",), ("read", snap("E", 4, range(2, 5)), False)], [("tell", "E", 4)], [[2, 3, 4]],
     "following E:4"),
    ("join read: what came while it read is merged by number after the snapshot",
     "E:3", [("reading",), ("deliver", 4), ("deliver", 5), ("read", snap("E", 4, range(1, 5)), True)],
     [("send", "E", 4), ("send", "E", 5)], [[1, 2, 3, 4, 5]], "following E:5"),
    ("join read: the broker went meanwhile",
     "E:3", [("reading",), ("read", None, True)], [], [[]], "following E:3"),
    ("join read, no stream in the broker yet",
     "local", [("reading",), ("read", snap(None, 0), False)], [], [[]], "local L:0"),
    ("join read showing a stream that started over: the members here get it whole",
     "E:3", [("reading",), ("read", snap("F", 2, [1, 2]), True)],
     [("tell", "F", 0), ("send", "F", 1), ("send", "F", 2)], [[1, 2]], "following F:2"),
    ("join read showing a new empty stream: the members here are told of it",
     "E:3", [("reading",), ("read", snap("F", 0), True)], [("tell", "F", 0)], [[]], "following F:0"),
    ("join read showing messages the members here missed: they get them",
     "E:3", [("reading",), ("read", snap("E", 5, range(1, 6)), True)],
     [("send", "E", 4), ("send", "E", 5)], [[1, 2, 3, 4, 5]], "following E:5"),
    ("join read of a room made here while the broker was away: its plain members get no history",
     "local", [("reading",), ("read", snap("F", 2, [1, 2]), True)], [("tell", "F", 2)], [[1, 2]], "following F:2"),
    ("join read while syncing: the catch-up brings the room up to date, not the join",
     "E:3 syncing", [("reading",), ("read", snap("E", 5, range(1, 6)), True)], [], [[]], "syncing E:3"),
    ("broker back: the room syncs",
     "E:3", [("catchingUp",)], [], [True], "syncing E:3"),
    ("broker back while syncing already: no second read",
     "E:3 syncing", [("catchingUp",)], [], [False], "syncing E:3"),
    ("syncing: what is delivered waits",
     "E:3 syncing", [("deliver", 6)], [], [], "syncing E:3"),
    ("caught up: the missed ones first, then what waited, once",
     "E:3 syncing", [("deliver", 5), ("deliver", 6), ("caughtUp", snap("E", 5, range(1, 6)))],
     [("send", "E", 4), ("send", "E", 5), ("send", "E", 6)], [([1, 2, 3, 4, 5, 6], [])], "following E:6"),
    ("caught up past what is kept: a welcome that does not claim recovery, then the kept ones",
     "E:1 syncing", [("caughtUp", snap("E", 9, range(7, 10)))],
     [("tell", "E", 6), ("send", "E", 7), ("send", "E", 8), ("send", "E", 9)], [([7, 8, 9], [])], "following E:9"),
    ("caught up with a stream that started over: it comes whole after its welcome",
     "E:3 syncing", [("deliver", 3, "F"), ("caughtUp", snap("F", 3, [1, 2, 3]))],
     [("tell", "F", 0), ("send", "F", 1), ("send", "F", 2), ("send", "F", 3)], [([1, 2, 3], [])], "following F:3"),
    ("caught up: the joins that waited are answered with the kept messages",
     "E:3 syncing", [("wait", "joiner"), ("caughtUp", snap("E", 4, range(1, 5)))],
     [("send", "E", 4)], [([1, 2, 3, 4], ["joiner"])], "following E:4"),
    ("caught up without a snapshot (the broker went again): what waited goes out",
     "E:3 syncing", [("deliver", None), ("caughtUp", None)], [("send", None, None)], [([], [])], "following E:3"),
    ("caught up without a snapshot, after numbers this process missed: told before what waited",
     "E:3 syncing", [("deliver", 7), ("deliver", 8), ("caughtUp", None)],
     [("tell", "E", 6), ("send", "E", 7), ("send", "E", 8)], [([], [])], "following E:8"),
    ("caught up, room made here while the broker was away: no history for its members",
     "local syncing", [("caughtUp", snap("F", 2, [1, 2])), ("deliver", 3, "F")],
     [("tell", "F", 2), ("send", "F", 3)], [([], [])], "following F:3"),
    ("forgotten: nothing waits any more",
     "E:3 syncing", [("wait", "joiner"), ("deliver", 4), ("abandon",)], [], [], "following E:3"),
]


@pytest.mark.parametrize("name, state, steps, sent, answers, after", TRANSITIONS, ids=[t[0] for t in TRANSITIONS])
def test_transition(
    name: str, state: str, steps: list[tuple[Any, ...]], sent: list[tuple[str, str | None, int | None]],
    answers: list[Any], after: str,
) -> None:
    if state == "local syncing":
        stream, out = start("local")
        assert stream.catchingUp()
    else:
        stream, out = start(state)
    assert run(stream, steps) == answers
    assert out.out == sent
    assert f"{stream.state} {stream.epoch}:{stream.seq}" == after
    assert stream.waiting == [] or stream.state == SYNCING


def test_the_buffer_is_empty_once_no_join_reads_and_nothing_waits() -> None:
    stream, out = start("E:3")
    stream.reading()
    stream.reading()
    stream.delivered(m(4))
    stream.read(snap("E", 4, range(1, 5)), True)
    assert stream._buffer == [m(4)], "the second join still needs it"
    stream.read(snap("E", 4, range(1, 5)), True)
    assert stream._buffer == []
    stream.delivered(m(5))
    assert stream._buffer == [], "nothing is recorded while no join reads"


def test_a_join_that_read_before_the_catch_up_began_still_finds_what_came_meanwhile() -> None:
    stream, out = start("E:3")
    stream.reading()
    stream.delivered(m(4))  # sent, recorded for the join
    assert stream.catchingUp()
    stream.delivered(m(5))  # held
    assert stream.read(snap("E", 4, range(1, 5)), True) == ()  # the join waits for the catch-up
    stream.waiting.append("joiner")
    kept, waiting = stream.caughtUp(snap("E", 5, range(1, 6)))
    assert [d.seq for d in kept] == [1, 2, 3, 4, 5] and waiting == ["joiner"]
    assert out.out == [("send", "E", 4), ("send", "E", 5)]
    assert stream._buffer == []


@pytest.mark.parametrize("state, since, ahead", [
    ("E:3", None, False), ("E:3", ("E", 3), False), ("E:3", ("E", 2), False), ("E:3", ("E", 4), True),
    # Another epoch than the one followed: which is the newer, only the broker knows.
    ("E:3", ("F", 9), True), ("E:3", ("F", 1), True), ("E:3", ("F", 0), False),
    # A stream of this process's own: the broker's comes in from its next message, nothing twice.
    ("local", ("F", 9), False),
])
def test_ahead(state: str, since: tuple[str, int] | None, ahead: bool) -> None:
    stream, _ = start(state)
    assert stream.ahead(since) is ahead


@pytest.mark.parametrize("since, kept, recovered", [
    (("E", 5), range(1, 6), []),  # nothing missed
    (("E", 5), [], []),  # nothing missed, nothing kept
    (("E", 3), range(1, 6), [4, 5]),
    (("E", 3), range(4, 6), [4, 5]),  # exactly what is kept
    (("E", 2), range(4, 6), None),  # 3 is gone
    (("E", 6), range(1, 6), None),  # ahead
    (("F", 3), range(1, 6), None),  # another stream
    (("E", 3), [], None),  # nothing kept
])
def test_recovered(since: tuple[str, int], kept: Iterable[int], recovered: list[int] | None) -> None:
    stream, _ = start("E:5")
    lines = stream.recovered(since, [m(n) for n in kept])
    assert lines == (None if recovered is None else [m(n).line for n in recovered])


def test_join_lines_fresh_recovered_and_not() -> None:
    stream, _ = start("E:3")
    kept = [m(n) for n in range(1, 4)]
    fresh = joinLines(stream, "r", 2, 512, None, kept, 50)
    assert fresh[0] == b'{"type":"welcome","room":"r","epoch":"E","seq":3,"online":2,"maxMessageSize":512}'
    assert fresh[1:] == [d.line for d in kept]
    back = joinLines(stream, "r", 2, 512, ("E", 2), kept, 50)
    assert b'"recovered":true' in back[0] and back[1:] == [kept[2].line]
    lost = joinLines(stream, "r", 2, 512, ("E", 0), kept[1:], 50)
    assert b'"recovered":false' in lost[0] and lost[1:] == [d.line for d in kept[1:]]


def test_states_are_named() -> None:
    assert {LOCAL, FOLLOWING, SYNCING} == {"local", "following", "syncing"}


def test_a_stream_resumed_where_this_process_last_followed_it_goes_on_without_a_welcome() -> None:
    out = Recorder()
    stream = RoomStream("L", out)
    stream.resume("E", 8)
    assert (stream.state, stream.epoch, stream.seq) == (FOLLOWING, "E", 8)
    stream.delivered(m(8))  # had already
    stream.delivered(m(9))
    assert out.out == [("send", "E", 9)], "the same stream: no welcome, nothing twice"
