"""A room's history on plain values."""

from __future__ import annotations

from txchat.history import History


def test_history_keeps_the_newest_n_oldest_first() -> None:
    history: History[bytes] = History(3)
    for seq in range(1, 6):
        history.append(seq, b"m%d" % seq)
    assert history.lines() == [b"m3", b"m4", b"m5"] and len(history) == 3
    history.clear()
    assert history.lines() == [] and len(history) == 0


def test_a_history_of_none_keeps_nothing() -> None:
    empty: History[bytes] = History(0)
    empty.append(1, b"m1")
    assert empty.lines() == [] and len(empty) == 0
