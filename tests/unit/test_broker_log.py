"""The memory broker with a chat log, on a task.Clock: written before delivered, numbering
that goes on across restarts, a log that cannot be written, resends, recovery and scrollback."""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from txchat.broker import MemoryBroker
from txchat.chatlog import ChatLog, LogError
from txchat.memorylog import MemoryLog
from txchat.stream import Delivery, Snapshot


class Log(MemoryLog):
    """A memory log that can be made to fail, and says what was written when."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.batches: list[list[int | None]] = []

    def append(self, messages: Sequence[Delivery]) -> None:
        if self.failing:
            raise LogError("disk full")
        self.batches.append([m.seq for m in messages])
        super().append(messages)


def started(log: ChatLog, clock: Clock | None = None, history: int = 3,
            recoveryMax: int = 1000) -> tuple[MemoryBroker, Clock, list[Delivery]]:
    clock = clock or Clock()
    broker = MemoryBroker(clock, history, 3600, log, recoveryMax)
    delivered: list[Delivery] = []
    broker.start(delivered.append, lambda room, process, count: None)
    return broker, clock, delivered


def say(text: bytes, room: str = "r", sender: str = "a:someone-1", ref: str | None = None) -> Delivery:
    return Delivery(room, text, "Ada", 1000, sender=sender, ref=ref)


def answer(d: Deferred[Any]) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    (result,) = got
    return result


def test_a_turn_s_messages_are_written_in_one_batch_before_any_is_delivered() -> None:
    log = Log()
    broker, clock, delivered = started(log)
    broker.publish(say(b"a"))
    broker.publish(say(b"b"))
    broker.publish(say(b"x", "other"))
    assert delivered == [] and log.batches == []
    clock.advance(0)
    assert log.batches == [[1, 2, 1]]
    assert [(d.room, d.seq) for d in delivered] == [("r", 1), ("r", 2), ("other", 1)]
    broker.stop()


def test_a_snapshot_shows_only_what_is_written_and_delivered() -> None:
    broker, clock, delivered = started(Log())
    broker.watch("r")
    broker.publish(say(b"a"))
    clock.advance(0)
    broker.publish(say(b"b"))  # numbered, not yet written
    snapshot = answer(broker.snapshot("r"))
    assert isinstance(snapshot, Snapshot) and snapshot.seq == 1 and [m.text for m in snapshot.history] == [b"a"]
    clock.advance(0)
    assert [d.seq for d in delivered] == [1, 2]
    broker.stop()


def test_after_a_restart_a_room_goes_on_with_its_epoch_numbers_and_history() -> None:
    log = Log()
    broker, clock, delivered = started(log)
    for text in (b"a", b"b", b"c", b"d"):
        broker.publish(say(text))
    clock.advance(0)
    broker.stop()  # the process stops; its log stays
    again, clock2, after = started(log, Clock())
    again.watch("r")
    snapshot = answer(again.snapshot("r"))
    assert isinstance(snapshot, Snapshot)
    assert (snapshot.epoch, snapshot.seq) == (delivered[0].epoch, 4)
    assert [m.text for m in snapshot.history] == [b"b", b"c", b"d"], "the newest --history of the log"
    again.publish(say(b"e"))
    clock2.advance(0)
    assert (after[0].epoch, after[0].seq) == (delivered[0].epoch, 5)
    again.stop()


def test_a_room_forgotten_here_goes_on_from_the_log() -> None:
    broker, clock, delivered = started(Log(), history=0)
    broker.publish(say(b"a"))
    clock.advance(0)
    broker.publish(say(b"b"))
    clock.advance(0)
    assert [(d.epoch, d.seq) for d in delivered] == [(delivered[0].epoch, 1), (delivered[0].epoch, 2)]
    broker.stop()


def test_a_batch_the_log_refuses_goes_out_unnumbered_and_its_numbers_are_given_again() -> None:
    log = Log()
    broker, clock, delivered = started(log)
    broker.publish(say(b"kept"))
    clock.advance(0)
    log.failing = True
    posted = broker.post(say(b"lost", ref="id-1"))
    broker.publish(say(b"lost too"))
    clock.advance(0)
    assert [(d.text, d.seq) for d in delivered] == [(b"kept", 1), (b"lost", None), (b"lost too", None)]
    assert answer(posted) is None and broker.unlogged == 2
    log.failing = False
    broker.publish(say(b"back"))
    clock.advance(0)
    assert (delivered[-1].text, delivered[-1].seq) == (b"back", 2), "no number seen by anyone is skipped"
    again = broker.post(say(b"lost", ref="id-1"))  # delivered unnumbered: acked so again, not delivered
    clock.advance(0)
    assert answer(again) is None and [d.text for d in delivered].count(b"lost") == 1
    broker.stop()


def test_a_resend_is_answered_with_the_first_number_and_not_delivered_even_in_flight_or_after_a_restart() -> None:
    log = Log()
    broker, clock, delivered = started(log)
    first = broker.post(say(b"once", ref="id-1"))
    inFlight = broker.post(say(b"once", ref="id-1"))
    clock.advance(0)
    later = broker.post(say(b"once", ref="id-1"))
    other = broker.post(say(b"twice", sender="a:someone-2", ref="id-1"))
    clock.advance(0)
    epoch = delivered[0].epoch
    assert [answer(d) for d in (first, inFlight, later, other)] == [(epoch, 1), (epoch, 1), (epoch, 1), (epoch, 2)]
    assert [d.text for d in delivered] == [b"once", b"twice"]
    broker.stop()
    again, clock2, after = started(log, Clock())
    resent = again.post(Delivery("r", b"once", "Ada", 1000, sender="a:someone-1", ref="id-1"))
    clock2.advance(0)
    assert answer(resent) == (epoch, 1) and after == []
    again.stop()


def test_recovery_reaches_back_into_the_log_up_to_recovery_max() -> None:
    broker, clock, delivered = started(Log(), history=2, recoveryMax=5)
    broker.watch("r")
    for i in range(8):
        broker.publish(say(b"m%d" % i))
    clock.advance(0)
    epoch = delivered[0].epoch
    assert epoch is not None
    near = answer(broker.snapshot("r", (epoch, 4)))
    assert isinstance(near, Snapshot) and [m.seq for m in near.history] == [5, 6, 7, 8]
    far = answer(broker.snapshot("r", (epoch, 2)))  # six missed: more than recovery-max
    assert isinstance(far, Snapshot) and [m.seq for m in far.history] == [7, 8]
    other = answer(broker.snapshot("r", ("another", 4)))
    assert isinstance(other, Snapshot) and [m.seq for m in other.history] == [7, 8]
    broker.stop()


def test_scrollback_pages_back_across_epochs_from_the_log() -> None:
    log = Log()
    broker, clock, delivered = started(log, history=0)
    broker.publish(say(b"old"))
    clock.advance(0)
    broker.stop()
    log.heads = lambda: {}  # type: ignore[method-assign]  # as after a power loss: a new epoch
    again, clock2, after = started(log, Clock(), history=0)
    again.publish(say(b"new"))
    clock2.advance(0)
    assert after[0].epoch != delivered[0].epoch
    page = answer(again.page("r", None, 1))
    assert [(m.text, m.epoch) for m in page.messages] == [(b"new", after[0].epoch)] and page.more
    assert after[0].epoch is not None
    older = answer(again.page("r", (after[0].epoch, 1), 10))
    assert [(m.text, m.epoch) for m in older.messages] == [(b"old", delivered[0].epoch)] and not older.more
    again.stop()


