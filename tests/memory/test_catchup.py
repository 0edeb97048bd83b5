"""What a process does when Redis comes back after it lost it, in memory: a stub broker whose
snapshots the test answers, a hub on a task.Clock; and the Redis broker itself, its connections
on string transports. (tests/system/faults has the scenarios over real networks.)"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from tests.support.fakeredis import Link, dial
from tests.support.memory import MemoryHub, Peer, V1Peer
from txchat.broker import Deliver, Presence, Snapshot
from txchat.chatlog import Page
from txchat.config import Config
from txchat.redisbroker import SNAPSHOT, RedisBroker
from txchat.rooms import Delivery


class StubBroker:
    """A broker that numbers nothing itself: the test delivers, and answers each snapshot."""

    state = "up"
    up = True
    backlog = 0
    dropped = 0

    def __init__(self) -> None:
        self.deliver: Callable[[Delivery], None] = lambda d: None
        self.reconnected: Callable[[], None] = lambda: None
        self.snapshots: list[tuple[str, Deferred[Any]]] = []

    def start(self, deliver: Deliver, presence: Presence, reconnected: Callable[[], None] = lambda: None,
              forgotten: Callable[[str], None] = lambda room: None) -> None:
        self.deliver, self.reconnected = deliver, reconnected

    def publish(self, message: Delivery) -> None:
        pass

    def post(self, message: Delivery) -> Deferred[Any]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def watch(self, room: str) -> None:
        pass

    def unwatch(self, room: str) -> None:
        pass

    def setOnline(self, room: str, count: int) -> None:
        pass

    def delete(self, room: str, epoch: str, seq: int) -> Deferred[bool]:
        return succeed(False)

    def keeps(self, room: str) -> bool:
        return False

    def page(self, room: str, before: tuple[str, int] | None, limit: int) -> Deferred[Page]:
        return succeed(Page([], False))

    def forget(self, room: str) -> None:
        pass

    def snapshot(self, room: str, since: tuple[str, int] | None = None) -> Deferred[Snapshot | None]:
        d: Deferred[Snapshot | None] = Deferred()
        self.snapshots.append((room, d))
        return d

    def answer(self, epoch: str, seq: int, kept: range, which: int = 0) -> None:
        _, d = self.snapshots.pop(which)
        d.callback(Snapshot(epoch, seq, [message(n) for n in kept], {}))


def message(seq: int, epoch: str = "E") -> Delivery:
    return Delivery("r", b"m%d" % seq, "", 1000 * seq, seq, epoch)


def setUp() -> tuple[MemoryHub, Clock, StubBroker, V1Peer]:
    clock, broker = Clock(), StubBroker()
    hub = MemoryHub(Config(history=50), clock, broker)
    hub.startBroker()
    member = V1Peer(hub, "r")
    broker.answer("E", 1, range(1, 2))
    clock.advance(0)
    assert seqs(member) == [("welcome", 1), ("message", 1)]
    return hub, clock, broker, member


def seqs(peer: V1Peer) -> list[tuple[str, Any]]:
    return [(line["type"], line.get("seq")) for line in peer.lines() if line["type"] != "presence"]


def test_back_from_an_outage_the_missed_messages_come_first_then_what_arrived_meanwhile_once() -> None:
    hub, clock, broker, member = setUp()
    broker.up = False
    broker.up = True
    broker.reconnected()
    broker.deliver(message(5))  # live, on the new subscription, before the catch-up is read
    clock.advance(0)
    assert seqs(member) == [], "held until the missed ones are in"
    broker.answer("E", 5, range(1, 6))
    broker.deliver(message(6))
    clock.advance(0)
    assert seqs(member) == [("message", 2), ("message", 3), ("message", 4), ("message", 5), ("message", 6)]


def test_what_is_no_longer_kept_is_said_with_a_welcome_that_does_not_claim_recovery() -> None:
    hub, clock, broker, member = setUp()
    broker.reconnected()
    broker.answer("E", 9, range(7, 10))  # 2..6 are gone from the history
    clock.advance(0)
    lines = [line for line in member.lines() if line["type"] != "presence"]
    assert (lines[0]["type"], lines[0]["seq"], lines[0]["recovered"]) == ("welcome", 6, False)
    assert [line["seq"] for line in lines[1:]] == [7, 8, 9]


def test_a_join_during_the_catch_up_waits_for_it_and_then_gets_one_unbroken_stream() -> None:
    hub, clock, broker, member = setUp()
    broker.reconnected()  # the room's catch-up asks first...
    joiner = V1Peer(hub, "r", "since=E:1")
    broker.answer("E", 4, range(1, 5), which=1)  # ...but the joiner's snapshot is answered first
    clock.advance(0)
    assert joiner.lines() == [], "it waits for the room's catch-up"
    broker.answer("E", 4, range(1, 5))
    clock.advance(0)
    assert seqs(member) == [("message", 2), ("message", 3), ("message", 4)]
    lines = [line for line in joiner.lines() if line["type"] != "presence"]
    assert (lines[0]["type"], lines[0]["recovered"]) == ("welcome", True)
    assert [line["seq"] for line in lines[1:]] == [2, 3, 4]


def test_a_client_ahead_of_a_process_cut_off_from_redis_is_told_to_try_again() -> None:
    hub, clock, broker, member = setUp()
    broker.up = False
    ahead = V1Peer(hub, "r", "since=E:7")
    assert ahead.status == 503
    same = V1Peer(hub, "r", "since=E:1")
    assert same.status == 101
    lines = same.lines()
    assert (lines[0]["type"], lines[0]["recovered"]) == ("welcome", True)


def test_a_client_of_another_stream_is_told_to_try_again_while_the_room_here_follows_one() -> None:
    """The room here follows E; a client resumes from F:1 (Redis started over, and this process,
    cut off, never heard of F). Admitted, it would be sent F's kept messages whole once Redis is
    back, as the members here are (below), F:1 a second time: so, as a client ahead in E, it is
    refused until then, or finds another process. (A fault run found it: a client got F:1 twice.)"""
    hub, clock, broker, member = setUp()
    broker.up = False
    assert V1Peer(hub, "r", "since=F:1").status == 503
    fresh = V1Peer(hub, "r", "since=F:0")  # nothing of F seen: nothing to get twice
    assert fresh.status == 101 and fresh.lines()[0]["recovered"] is False
    assert member.open
    broker.up = True
    resuming = V1Peer(hub, "r", "since=F:1")
    assert resuming.status == 101
    broker.reconnected()  # the room catches up; the join waits for that
    for _, d in [broker.snapshots.pop(0), broker.snapshots.pop(0)]:  # the join's read, the catch-up's
        d.callback(Snapshot("F", 1, [message(1, "F")], {}))
    clock.advance(0)
    assert [(line["type"], line.get("epoch"), line["seq"], line.get("recovered")) for line in resuming.lines()
            if line["type"] != "presence"] == [("welcome", "F", 1, True)], "recovered, nothing again"
    assert [(line["type"], line.get("epoch"), line["seq"]) for line in member.lines()
            if line["type"] != "presence"] == [("welcome", "F", 0), ("message", None, 1)], "F whole, after a welcome"


def test_a_stream_that_started_over_meanwhile_comes_whole_after_a_new_welcome() -> None:
    hub, clock, broker, member = setUp()
    broker.reconnected()
    broker.deliver(message(3, "F"))
    _, d = broker.snapshots.pop(0)
    d.callback(Snapshot("F", 3, [message(1, "F"), message(2, "F"), message(3, "F")], {}))
    clock.advance(0)
    lines = [line for line in member.lines() if line["type"] != "presence"]
    assert (lines[0]["type"], lines[0]["epoch"], lines[0]["seq"], lines[0]["recovered"]) == ("welcome", "F", 0, False)
    assert [line["seq"] for line in lines[1:]] == [1, 2, 3]


def test_a_room_made_while_redis_was_away_tells_its_members_when_redis_numbers_arrive() -> None:
    clock, broker = Clock(), StubBroker()
    hub = MemoryHub(Config(history=50), clock, broker)
    hub.startBroker()
    broker.up = False
    member = V1Peer(hub, "r")
    (welcome,) = [line for line in member.lines() if line["type"] == "welcome"]
    assert welcome["epoch"] != "E", "this process's own epoch, for now"
    broker.up = True
    broker.deliver(message(1))
    clock.advance(0)
    lines = [line for line in member.lines() if line["type"] != "presence"]
    assert [(line["type"], line.get("epoch"), line["seq"]) for line in lines] == [("welcome", "E", 0), ("message", None, 1)]


def test_a_joiner_who_finds_a_new_stream_does_not_leave_the_members_here_in_the_old_one() -> None:
    hub, clock, broker, member = setUp()
    joiner = V1Peer(hub, "r")
    _, d = broker.snapshots.pop(0)
    d.callback(Snapshot("F", 2, [message(1, "F"), message(2, "F")], {}))
    clock.advance(0)
    lines = [line for line in member.lines() if line["type"] != "presence"]
    assert [(line["type"], line.get("epoch"), line["seq"]) for line in lines] == [
        ("welcome", "F", 0), ("message", None, 1), ("message", None, 2)]
    joined = [line for line in joiner.lines() if line["type"] != "presence"]
    assert [(line["type"], line.get("epoch"), line["seq"]) for line in joined] == [
        ("welcome", "F", 2), ("message", None, 1), ("message", None, 2)]


def test_a_joiner_who_finds_a_new_empty_stream_has_the_members_here_told_of_it() -> None:
    hub, clock, broker, member = setUp()
    V1Peer(hub, "r")
    _, d = broker.snapshots.pop(0)
    d.callback(Snapshot("F", 0, [], {}))  # Redis came back empty: the joiner's read began stream F
    broker.deliver(message(1, "F"))
    clock.advance(0)
    lines = [line for line in member.lines() if line["type"] != "presence"]
    assert [(line["type"], line.get("epoch"), line["seq"]) for line in lines] == [("welcome", "F", 0), ("message", None, 1)]


def test_plain_clients_of_a_room_made_while_redis_was_away_get_no_history_when_it_returns() -> None:
    clock, broker = Clock(), StubBroker()
    hub = MemoryHub(Config(history=50), clock, broker)
    hub.startBroker()
    broker.up = False
    plain = Peer(hub, path="/ws/r")
    broker.up = True
    broker.reconnected()
    _, d = broker.snapshots.pop(0)
    d.callback(Snapshot("F", 2, [message(1, "F"), message(2, "F")], {}))  # said before they came
    broker.deliver(message(3, "F"))
    clock.advance(0)
    assert plain.messages() == ["m3"], "only what was said after they came, as the gorilla chat does"


def test_a_snapshot_read_before_the_channel_brings_its_messages_gives_nobody_anything_twice() -> None:
    hub, clock, broker, member = setUp()
    joiner = V1Peer(hub, "r")
    broker.answer("E", 3, range(1, 4))  # Redis holds 2 and 3; the channel has not brought them yet
    for seq in (2, 3, 4):
        broker.deliver(message(seq))
    clock.advance(0)
    assert seqs(member) == [("message", 2), ("message", 3), ("message", 4)]
    assert seqs(joiner) == [("welcome", 3), ("message", 1), ("message", 2), ("message", 3), ("message", 4)]


def test_a_room_left_empty_and_made_again_while_redis_is_away_goes_on_with_the_epoch_it_had() -> None:
    hub, clock, broker, member = setUp()
    for n in range(2, 9):
        broker.deliver(message(n))
    clock.advance(0)
    member.transport.abortConnection()  # its only member goes: the room is forgotten here
    clock.advance(0)
    assert hub.room("r") is None
    broker.up = False  # Redis is away when the member comes back
    back = V1Peer(hub, "r", "since=E:8")
    clock.advance(0)
    lines = [line for line in back.lines() if line["type"] != "presence"]
    assert [(line["type"], line["epoch"], line["seq"], line["recovered"]) for line in lines] == [
        ("welcome", "E", 8, True)], "the stream it follows, not a new epoch of this process's own"
    behind = V1Peer(hub, "r", "since=E:5")
    clock.advance(0)
    welcome = behind.lines()[0]
    assert (welcome["epoch"], welcome["seq"], welcome["recovered"]) == ("E", 8, False)
    broker.up = True
    broker.reconnected()
    broker.answer("E", 10, range(1, 11))
    clock.advance(0)
    assert seqs(back)[-2:] == [("message", 9), ("message", 10)], "what the other processes numbered meanwhile"


def test_a_count_read_from_redis_is_as_old_as_its_last_say() -> None:
    """A joiner's read of Redis finds another process's count said 19 s ago (it has just died):
    that count goes stale a second later, not 20 s after the read, or every join would keep a
    dead process counting longer."""
    clock, broker = Clock(), StubBroker()
    config = Config(history=50)
    hub = MemoryHub(config, clock, broker)
    hub.startBroker()
    member = V1Peer(hub, "r")
    _, d = broker.snapshots.pop(0)
    d.callback(Snapshot("E", 0, [], {"dead": 3}, {"dead": config.presenceStale - 1}))
    clock.advance(0)
    assert [line["online"] for line in member.lines() if line["type"] == "welcome"] == [4]
    for _ in range(3):
        clock.advance(1)  # the staleness check (every second), then the presence line
    assert [line["online"] for line in member.lines() if line["type"] == "presence"][-1:] == [1]
    hub.presence.stop()


def test_redis_back_the_new_subscription_brings_nothing_before_what_was_missed() -> None:
    clock = MemoryReactorClock()
    config = Config(history=50)
    broker = RedisBroker("redis://127.0.0.1:6390", clock, config, retryDelay=lambda attempt: 1.0)
    hub = MemoryHub(config, clock, broker)
    hub.startBroker()
    publisher, subscriber = dial(clock)
    # (With the people's control channel, SPEC §18; and the room's people read behind a PING.)
    assert subscriber.commands() == [[b"SUBSCRIBE", b"txchat:@control"], [b"PING"]]
    subscriber.reply([b"subscribe", b"txchat:@control", 1], [b"pong", b""])
    member = V1Peer(hub, "r")
    assert subscriber.commands() == [[b"SUBSCRIBE", b"txchat:r"], [b"PING"], [b"PING"]]
    subscriber.reply([b"subscribe", b"txchat:r", 1], [b"pong", b""], [b"pong", b""])
    answer(publisher, [b"E", 1, [], [payload(1)]])
    clock.advance(0)
    assert seqs(member) == [("welcome", 1), ("message", 1)]
    subscriber.lose()  # meanwhile, other processes publish 2, 3 and 4
    clock.advance(1.0)
    (subscriber,) = dial(clock)
    # The subscriptions, their confirmation, and the room's catch-up (and its people) behind them.
    assert subscriber.commands() == [[b"SUBSCRIBE", b"txchat:@control"], [b"SUBSCRIBE", b"txchat:r"], [b"PING"],
                                     [b"PING"], [b"PING"]]
    subscriber.reply([b"subscribe", b"txchat:@control", 1], [b"subscribe", b"txchat:r", 1],
                     [b"message", b"txchat:r", payload(5)], [b"pong", b""], [b"pong", b""], [b"pong", b""])
    clock.advance(0)
    assert seqs(member) == [], "5 waits for what was missed"
    answer(publisher, [b"E", 5, [], [payload(n) for n in range(1, 6)]])
    subscriber.reply([b"message", b"txchat:r", payload(6)])
    clock.advance(0)
    assert seqs(member) == [("message", n) for n in (2, 3, 4, 5, 6)]
    hub.closeAll()
    broker.stop()


def answer(publisher: Link, snapshot: list[Any]) -> None:
    """Reply to what the publisher sent: the snapshot script with C{snapshot}, others with 1."""
    sha = hashlib.sha1(SNAPSHOT).hexdigest().encode()
    commands = publisher.commands()
    assert [c[1] for c in commands].count(sha) == 1, commands
    publisher.reply(*(snapshot if command[1] == sha else 1 for command in commands))


def payload(seq: int) -> bytes:
    return json.dumps(["m", "E", seq, 1000 * seq, "", "m%d" % seq]).encode()


def test_a_client_ahead_refused_while_redis_is_away_leaves_no_room_behind() -> None:
    hub, clock, broker, member = setUp()
    for n in (2, 3):
        broker.deliver(message(n))
    clock.advance(0)
    member.transport.abortConnection()
    clock.advance(0)
    broker.up = False
    assert V1Peer(hub, "r", "since=E:7").status == 503  # the room, made again for it, ...
    assert hub.room("r") is None, "... holds nothing and is not kept"
    assert V1Peer(hub, "r", "since=E:3").lines()[0]["recovered"] is True, "its stream is still remembered"


@pytest.mark.parametrize("since", ["E:4", "F:1"])  # further along the room's stream, or of another
def test_a_waiting_client_ahead_of_a_catch_up_that_failed_is_told_to_try_again(since: str) -> None:
    hub, clock, broker, member = setUp()
    broker.reconnected()  # the room's catch-up asks first
    ahead = V1Peer(hub, "r", f"since={since}")
    _, d = broker.snapshots.pop(1)  # its own read: it waits for the catch-up
    epoch = since[0]
    d.callback(Snapshot(epoch, 4, [message(n, epoch) for n in range(1, 5)], {}))
    clock.advance(0)
    assert ahead.lines() == []
    _, d = broker.snapshots.pop(0)
    d.callback(None)  # Redis went again before the catch-up was read
    clock.advance(0)
    assert ahead.closeCode() == 1013
    assert member.open


def test_a_client_of_another_stream_whose_join_redis_left_during_is_told_to_try_again() -> None:
    hub, clock, broker, member = setUp()
    ahead = V1Peer(hub, "r", "since=F:1")
    assert ahead.status == 101  # Redis is there: it will tell which stream is the room's
    broker.up = False
    _, d = broker.snapshots.pop(0)
    d.callback(None)  # it went before the join's read was answered
    clock.advance(0)
    assert ahead.closeCode() == 1013
    assert member.open


def test_a_client_of_another_stream_than_the_one_remembered_gets_no_history_of_either_replayed() -> None:
    """This process last followed E; the client comes from F (Redis started over meanwhile):
    which is the newer only Redis knows, so the room is not resumed as E, and when Redis is back
    the client is not sent F's kept messages again, only what comes next."""
    hub, clock, broker, member = setUp()
    member.transport.abortConnection()
    clock.advance(0)
    broker.up = False
    client = V1Peer(hub, "r", "since=F:35")
    clock.advance(0)
    welcome = client.lines()[0]
    assert welcome["epoch"] not in ("E", "F") and welcome["recovered"] is False
    broker.up = True
    broker.reconnected()
    _, d = broker.snapshots.pop(0)
    d.callback(Snapshot("F", 36, [message(n, "F") for n in range(1, 37)], {}))
    broker.deliver(message(37, "F"))
    clock.advance(0)
    assert [(line["type"], line.get("epoch"), line["seq"]) for line in client.lines()
            if line["type"] != "presence"] == [("welcome", "F", 36), ("message", None, 37)]
