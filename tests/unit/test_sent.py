"""The sends accepted lately (txchat/sent.py): kept ten minutes on the injected clock, at most
LIMIT of them, the oldest out first; what waits for a number stands for a send being numbered."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from txchat.sent import LIMIT, SENT_FOR, SentIds


def test_defaults_are_ten_minutes_and_a_hundred_thousand() -> None:
    assert (SENT_FOR, LIMIT) == (600.0, 100_000)


# (what is said: ("add", sender, ref, epoch, seq) or ("wait", sender, ref, token), at a time),
# (the question: sender, ref, at a time), the answer
CASES: list[tuple[list[tuple[float, tuple[Any, ...]]], tuple[str, str, float], Any]] = [
    ([(0.0, ("add", "u:a", "1", "e", 7))], ("u:a", "1", 0.0), ("e", 7)),
    ([(0.0, ("add", "u:a", "1", "e", 7))], ("u:a", "1", 599.9), ("e", 7)),
    ([(0.0, ("add", "u:a", "1", "e", 7))], ("u:a", "1", 600.0), None),  # ten minutes on: a new send
    ([(0.0, ("add", "u:a", "1", "e", 7))], ("u:b", "1", 1.0), None),  # another sender's ID is its own
    ([(0.0, ("add", "u:a", "1", "e", 7))], ("u:a", "2", 1.0), None),
    ([(0.0, ("add", "a:x", "1", None, None))], ("a:x", "1", 1.0), (None, None)),  # delivered unnumbered
    ([(0.0, ("wait", "a:x", "1", "first"))], ("a:x", "1", 1.0), "first"),  # being numbered
    ([(0.0, ("wait", "a:x", "1", "first")), (0.5, ("add", "a:x", "1", "e", 3))], ("a:x", "1", 1.0), ("e", 3)),
    ([(0.0, ("add", "a:x", "1", "e", 1)), (100.0, ("add", "a:x", "2", "e", 2))], ("a:x", "2", 650.0), ("e", 2)),
    ([(0.0, ("add", "a:x", "1", "e", 1)), (100.0, ("add", "a:x", "2", "e", 2))], ("a:x", "1", 650.0), None),
]


@pytest.mark.parametrize("said, asked, answer", CASES)
def test_what_a_resend_is_answered(said: list[tuple[float, tuple[Any, ...]]], asked: tuple[str, str, float],
                                   answer: Any) -> None:
    clock = Clock()
    sent = SentIds(clock)
    for when, (kind, *args) in said:
        clock.advance(when - clock.seconds())
        if kind == "add":
            sent.add(*args)
        else:
            sent.wait(*args)
    sender, ref, when = asked
    clock.advance(when - clock.seconds())
    assert sent.get(sender, ref) == answer


def test_expired_entries_go_as_time_passes() -> None:
    clock = Clock()
    sent = SentIds(clock, keep=10.0)
    for i in range(5):
        sent.add("s", str(i), "e", i)
        clock.advance(1)
    assert len(sent) == 5
    clock.advance(7)  # now 12: 0, 1 and 2 were accepted 10 s or more before
    assert sent.get("s", "4") == ("e", 4)
    assert len(sent) == 2


def test_at_most_limit_entries_the_oldest_going_first() -> None:
    sent = SentIds(Clock(), limit=3)
    for i in range(5):
        sent.add("s", str(i), "e", i)
    assert len(sent) == 3
    assert [sent.get("s", str(i)) for i in range(5)] == [None, None, ("e", 2), ("e", 3), ("e", 4)]
