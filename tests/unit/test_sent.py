"""The sends accepted lately (txchat/sent.py): kept ten minutes, at most LIMIT, oldest out first."""

from __future__ import annotations

import pytest

from txchat.sent import LIMIT, TTL, SentIds


def test_defaults_are_ten_minutes_and_a_hundred_thousand() -> None:
    assert (TTL, LIMIT) == (600.0, 100_000)
    sent: SentIds[int] = SentIds()
    assert (sent.ttl, sent.limit) == (TTL, LIMIT)


# (what is remembered: (sender, ref, value, when)), (the question: sender, ref, when), the answer
CASES = [
    ([("u:a", "1", 7, 0.0)], ("u:a", "1", 0.0), 7),
    ([("u:a", "1", 7, 0.0)], ("u:a", "1", 599.9), 7),
    ([("u:a", "1", 7, 0.0)], ("u:a", "1", 600.0), None),  # ten minutes on: a new send
    ([("u:a", "1", 7, 0.0)], ("u:b", "1", 1.0), None),  # another sender's ID is its own
    ([("u:a", "1", 7, 0.0)], ("u:a", "2", 1.0), None),
    ([("u:a", "1", 7, 0.0), ("u:a", "1", 8, 5.0)], ("u:a", "1", 5.0), 7),  # the first answer stays
    ([("u:a", "1", 7, 0.0), ("u:a", "1", 8, 5.0)], ("u:a", "1", 601.0), None),  # ... and so does its time
    ([("a:x", "1", 1, 0.0), ("a:x", "2", 2, 100.0)], ("a:x", "2", 650.0), 2),
]


@pytest.mark.parametrize("remembered, asked, answer", CASES)
def test_what_a_resend_is_answered(
    remembered: list[tuple[str, str, int, float]], asked: tuple[str, str, float], answer: int | None,
) -> None:
    sent: SentIds[int] = SentIds()
    for sender, ref, value, when in remembered:
        sent.remember(sender, ref, value, when)
    assert sent.get(*asked) == answer


def test_expired_entries_go_as_time_passes() -> None:
    sent: SentIds[int] = SentIds(ttl=10.0)
    for i in range(5):
        sent.remember("s", str(i), i, float(i))
    assert len(sent) == 5
    assert sent.get("s", "4", 12.0) == 4
    assert len(sent) == 2  # 0, 1 and 2 were accepted 10 s or more before


def test_at_most_limit_entries_the_oldest_going_first() -> None:
    sent: SentIds[int] = SentIds(limit=3)
    for i in range(5):
        sent.remember("s", str(i), i, 0.0)
    assert len(sent) == 3
    assert [sent.get("s", str(i), 0.0) for i in range(5)] == [None, None, 2, 3, 4]
