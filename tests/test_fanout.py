"""The output rules (README, "What a client sees") on plain objects."""

from __future__ import annotations

import pytest

from txchat.fanout import Fanout

pytestmark = pytest.mark.unit


def frame(payload: bytes) -> bytes:
    return b"F:" + payload


class Member:
    def __init__(self, fanout: Fanout, pauseOnWrite: bool = False) -> None:
        self.fanout = fanout
        self.frames: list[bytes] = []
        self.pauseOnWrite = pauseOnWrite
        fanout.add(self, self.write)

    def write(self, data: bytes) -> None:
        self.frames.append(data)
        if self.pauseOnWrite:
            self.fanout.pause(self)


def test_one_shared_frame_per_flush():
    fanout = Fanout(10, frame)
    a, b = Member(fanout), Member(fanout)
    assert fanout.queue(b"x") is True
    assert fanout.queue(b"y") is False
    assert fanout.flush() == []
    assert a.frames == b.frames == [b"F:x\ny"]
    assert a.frames[0] is b.frames[0]


def test_flush_with_nothing_published_writes_nothing():
    fanout = Fanout(10, frame)
    a = Member(fanout)
    assert fanout.flush() == []
    assert a.frames == []


def test_paused_member_gets_backlog_on_resume_in_order():
    fanout = Fanout(10, frame)
    a, b = Member(fanout), Member(fanout)
    fanout.pause(b)
    for m in (b"1", b"2"):
        fanout.queue(m)
        fanout.flush()
    fanout.queue(b"3")
    fanout.flush()
    assert b.frames == []
    fanout.resume(b)
    assert b.frames == [b"F:1\n2\n3"]
    assert a.frames == [b"F:1", b"F:2", b"F:3"]


def test_resume_without_backlog_writes_nothing():
    fanout = Fanout(10, frame)
    a = Member(fanout)
    fanout.pause(a)
    fanout.resume(a)
    fanout.resume(a)
    assert a.frames == []


def test_pause_during_flush_is_safe_and_takes_effect_next_flush():
    fanout = Fanout(10, frame)
    a = Member(fanout, pauseOnWrite=True)
    b = Member(fanout)
    fanout.queue(b"1")
    fanout.flush()
    fanout.queue(b"2")
    fanout.flush()
    assert a.frames == [b"F:1"] and fanout.backlog(a) == 1
    assert b.frames == [b"F:1", b"F:2"]


def test_overflowing_member_is_dropped_others_unaffected():
    fanout = Fanout(3, frame)
    a, slow = Member(fanout), Member(fanout)
    fanout.pause(slow)
    fanout.queue(b"1")
    fanout.queue(b"2")
    assert fanout.flush() == []
    fanout.queue(b"3")
    assert fanout.flush() == []
    assert fanout.backlog(slow) == 3
    fanout.queue(b"4")
    assert fanout.flush() == [slow]
    assert slow not in fanout and len(fanout) == 1
    assert a.frames == [b"F:1\n2", b"F:3", b"F:4"]


def test_a_single_batch_larger_than_the_queue_drops_a_paused_member():
    fanout = Fanout(2, frame)
    slow = Member(fanout)
    fanout.pause(slow)
    for m in (b"1", b"2", b"3"):
        fanout.queue(m)
    assert fanout.flush() == [slow]


def test_a_member_that_keeps_up_is_never_dropped_however_big_the_batch():
    fanout = Fanout(2, frame)
    a = Member(fanout)
    for i in range(1000):
        fanout.queue(b"%d" % i)
    assert fanout.flush() == []
    assert a.frames[0].count(b"\n") == 999


def test_remove_and_membership():
    fanout = Fanout(2, frame)
    a, b = Member(fanout), Member(fanout)
    fanout.pause(b)
    assert set(fanout) == {a, b} and len(fanout) == 2
    fanout.remove(a)
    fanout.remove(b)
    fanout.remove(b)
    assert len(fanout) == 0
    fanout.queue(b"x")
    fanout.flush()
    assert a.frames == [] and b.frames == []
