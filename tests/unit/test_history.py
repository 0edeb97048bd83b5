"""A room's history on plain values."""

from __future__ import annotations

from txchat.history import History


def test_history_gives_exactly_what_was_missed_or_says_it_cannot() -> None:
    history: History[bytes] = History(3)
    for seq in range(1, 6):
        history.append(seq, b"m%d" % seq)  # keeps 3, 4, 5
    assert history.lines() == [b"m3", b"m4", b"m5"]
    assert history.after(5, 5) == []
    assert history.after(2, 5) == [b"m3", b"m4", b"m5"]
    assert history.after(4, 5) == [b"m5"]
    assert history.after(1, 5) is None  # 2 is gone
    assert history.after(6, 5) is None  # from the future
    empty: History[bytes] = History(0)
    empty.append(1, b"m1")
    assert empty.lines() == [] and empty.after(0, 1) is None and empty.after(1, 1) == []
