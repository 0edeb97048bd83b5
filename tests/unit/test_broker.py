"""The memory broker on a task.Clock: it numbers and keeps each room's messages as Redis does."""

from __future__ import annotations

from typing import TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from txchat.broker import MemoryBroker
from txchat.stream import Delivery, Snapshot



def started(history: int = 3, ttl: float = 60) -> tuple[MemoryBroker, Clock, list[Delivery], list[str]]:
    clock = Clock()
    broker = MemoryBroker(clock, history, ttl)
    delivered: list[Delivery] = []
    forgotten: list[str] = []
    broker.start(delivered.append, lambda room, process, count: None, forgotten=forgotten.append)
    return broker, clock, delivered, forgotten


def say(text: bytes, room: str = "r") -> Delivery:
    return Delivery(room, text, "Ada", 1000)


T = TypeVar("T")


def answer(d: Deferred[T | None]) -> T:
    got: list[T | None] = []
    d.addCallback(got.append)
    (result,) = got  # in memory, every answer is synchronous
    assert result is not None, "the memory broker always answers"
    return result


def test_publish_numbers_each_room_keeps_the_newest_and_delivers_numbered() -> None:
    broker, clock, delivered, _ = started(history=2)
    for text in (b"a", b"b", b"c"):
        broker.publish(say(text))
    broker.publish(say(b"x", "other"))
    assert [(d.room, d.text, d.seq) for d in delivered] == [("r", b"a", 1), ("r", b"b", 2), ("r", b"c", 3),
                                                            ("other", b"x", 1)]
    assert len({d.epoch for d in delivered}) == 2, "one epoch a room"
    assert [d.seq for d in broker.kept("r")] == [2, 3]
    broker.forget("r")
    broker.forget("other")


def test_post_fires_with_the_number_and_snapshot_answers_like_redis() -> None:
    broker, clock, delivered, _ = started()
    broker.watch("r")
    epoch, seq = answer(broker.post(say(b"a")))
    assert (epoch, seq) == (delivered[0].epoch, 1)
    snapshot = answer(broker.snapshot("r"))
    assert snapshot == Snapshot(epoch, 1, [delivered[0]], {})
    broker.forget("r")


def test_snapshot_starts_the_stream_of_a_watched_room_only() -> None:
    broker, clock, _, _ = started()
    assert answer(broker.snapshot("nobody")) == Snapshot(None, 0, [], {})
    broker.watch("r")
    first = answer(broker.snapshot("r"))
    assert first.epoch is not None and first.seq == 0
    broker.publish(say(b"a"))
    assert answer(broker.snapshot("r")).epoch == first.epoch, "the welcome's epoch is the messages'"
    broker.forget("r")


def test_history_expires_after_the_last_message_and_an_unwatched_room_is_forgotten() -> None:
    broker, clock, delivered, forgotten = started(ttl=60)
    broker.publish(say(b"a"))
    clock.advance(30)
    broker.publish(say(b"b"))
    clock.advance(59)
    assert broker.keeps("r") and forgotten == []
    clock.advance(1)
    assert not broker.keeps("r") and forgotten == ["r"]
    assert clock.getDelayedCalls() == []
    broker.publish(say(b"c"))
    assert delivered[-1].seq == 1 and delivered[-1].epoch != delivered[0].epoch, "a new epoch"
    broker.forget("r")


def test_a_watched_room_keeps_numbering_after_its_history_expires() -> None:
    broker, clock, delivered, forgotten = started(ttl=60)
    broker.watch("r")
    broker.publish(say(b"a"))
    clock.advance(60)
    assert not broker.keeps("r") and forgotten == []
    broker.publish(say(b"b"))
    assert [(d.epoch, d.seq) for d in delivered][1] == (delivered[0].epoch, 2)
    broker.unwatch("r")
    assert broker.keeps("r"), "its history still is"
    clock.advance(60)
    assert forgotten == ["r"] and clock.getDelayedCalls() == []


def test_without_history_a_room_nobody_watches_is_forgotten_at_once() -> None:
    broker, clock, delivered, _ = started(history=0)
    broker.publish(say(b"a"))
    broker.publish(say(b"b"))
    assert [d.seq for d in delivered] == [1, 1] and delivered[0].epoch != delivered[1].epoch
    assert clock.getDelayedCalls() == []


def test_stop_lets_every_timer_go() -> None:
    broker, clock, _, _ = started()
    broker.publish(say(b"a"))
    broker.stop()
    assert clock.getDelayedCalls() == []
