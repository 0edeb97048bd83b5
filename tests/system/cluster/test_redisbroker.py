"""The Redis broker against a real redis-server (on a task.Clock: tests/unit/test_redisbroker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from bench.redisserver import RedisServer
from tests.support.live import within
from tests.support.redis import redis  # noqa: F401  (a fixture)
from txchat.config import Config
from txchat.redisbroker import RedisBroker
from txchat.redisclient import RedisConnection
from txchat.rooms import Delivery


class Inbox:
    """Collects deliveries (their texts in C{messages}); a test waits for a count."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.deliveries: list[Delivery] = []
        self.presence: list[tuple[str, str, int]] = []
        self._waiting: list[tuple[int, Deferred[list[bytes]]]] = []
        self._said: list[Deferred[list[tuple[str, str, int]]]] = []

    def onPresence(self, room: str, process: str, count: int) -> None:
        self.presence.append((room, process, count))
        said, self._said = self._said, []
        for d in said:
            d.callback(self.presence)

    def nextPresence(self) -> Deferred[list[tuple[str, str, int]]]:
        d: Deferred[list[tuple[str, str, int]]] = Deferred()
        self._said.append(d)
        return within(d)

    def __call__(self, message: Delivery) -> None:
        self.deliveries.append(message)
        self.messages.append(message.text)
        ready = [d for n, d in self._waiting if len(self.messages) >= n]
        self._waiting = [(n, d) for n, d in self._waiting if len(self.messages) < n]
        for d in ready:
            d.callback(self.messages)

    def count(self, n: int) -> Deferred[list[bytes]]:
        if len(self.messages) >= n:
            d: Deferred[list[bytes]] = Deferred()
            d.callback(self.messages)
            return d
        d = Deferred()
        self._waiting.append((n, d))
        return within(d)


async def startBroker(url: str, rooms: tuple[str, ...] = ("lobby",), **kwargs: Any) -> tuple[RedisBroker, Inbox]:
    inbox = Inbox()
    broker = RedisBroker(url, reactor, **kwargs)
    broker.start(inbox, inbox.onPresence)
    for room in rooms:
        broker.watch(room)
    await within(broker.when("up"))
    return broker, inbox


def message(text: bytes, room: str = "lobby") -> Delivery:
    return Delivery(room, text, "", 0)


@pytest_twisted.ensureDeferred
async def test_two_processes_deliver_in_one_order(redis: RedisServer) -> None:
    a, inboxA = await startBroker(redis.url)
    b, inboxB = await startBroker(redis.url)
    sent = [b"m%d" % i for i in range(200)]
    for i, text in enumerate(sent):
        (a if i % 3 else b).publish(message(text))
    assert inboxA.messages == [] and inboxB.messages == []  # nothing delivered ahead of Redis
    await inboxA.count(200)
    await inboxB.count(200)
    assert inboxA.messages == inboxB.messages
    assert sorted(inboxA.messages) == sorted(sent)
    # Numbered by Redis, in the order delivered, in one epoch.
    assert [d.seq for d in inboxA.deliveries] == list(range(1, 201))
    assert len({d.epoch for d in inboxA.deliveries + inboxB.deliveries}) == 1
    await DeferredList([a.stop(), b.stop()])


@pytest_twisted.ensureDeferred
async def test_outage_keeps_local_chat_and_recovers_by_itself(redis: RedisServer) -> None:
    a, inboxA = await startBroker(redis.url)
    b, inboxB = await startBroker(redis.url)
    await deferToThread(redis.kill)
    await within(DeferredList([a.when("down"), b.when("down")]))
    a.publish(message(b"during the outage"))
    assert inboxA.messages == [b"during the outage"]  # local clients still chat
    assert inboxA.deliveries[0].seq is None  # unnumbered: Redis is the numberer
    assert inboxB.messages == []  # the other process does not get it
    await deferToThread(redis.start)  # the same port again
    await within(DeferredList([a.when("up"), b.when("up")]), 20)
    a.publish(message(b"after"))
    assert (await inboxB.count(1))[-1] == b"after"
    assert (await inboxA.count(2))[-1] == b"after"
    await DeferredList([a.stop(), b.stop()])


@pytest_twisted.ensureDeferred
async def test_unreachable_at_start_serves_locally_then_joins(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    await deferToThread(server.start)
    await deferToThread(server.stop)  # a port where nothing listens, for now
    inbox = Inbox()
    broker = RedisBroker(server.url, reactor)
    broker.start(inbox, inbox.onPresence)
    broker.watch("lobby")
    await within(broker.when("down"))
    broker.publish(message(b"alone"))
    assert inbox.messages == [b"alone"]
    await deferToThread(server.start)
    try:
        await within(broker.when("up"), 20)
        broker.publish(message(b"joined"))
        assert (await inbox.count(2))[-1] == b"joined"
    finally:
        await broker.stop()
        await deferToThread(server.stop)


@pytest_twisted.ensureDeferred
async def test_full_publish_backlog_refuses_messages_and_recovers(redis: RedisServer) -> None:
    a, inbox = await startBroker(redis.url, config=Config(redisBacklog=10))
    pause = await within(RedisConnectionTo(redis))
    await within(pause.command(b"CLIENT", b"PAUSE", b"1500", b"ALL"))
    for i in range(15):
        a.publish(message(b"p%d" % i))
    assert a.backlog == 10 and a.dropped == 5
    assert inbox.messages == []
    await inbox.count(10)  # once Redis resumes, the ten it took arrive, in order
    assert inbox.messages == [b"p%d" % i for i in range(10)]
    a.publish(message(b"drained"))
    assert (await inbox.count(11))[-1] == b"drained"
    pause.transport.loseConnection()
    await pause.lost
    await a.stop()


def RedisConnectionTo(redis: RedisServer) -> Deferred[RedisConnection]:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", redis.port), RedisConnection())


@pytest_twisted.ensureDeferred
async def test_rooms_have_their_own_channels_numbers_and_history(redis: RedisServer) -> None:
    a, inboxA = await startBroker(redis.url, rooms=("one",))
    b, inboxB = await startBroker(redis.url, rooms=("two",), config=Config(history=3))
    for i in range(5):
        a.publish(message(b"one %d" % i, "one"))
        a.publish(message(b"two %d" % i, "two"))
    await inboxA.count(5)
    await inboxB.count(5)
    assert inboxA.messages == [b"one %d" % i for i in range(5)]  # each process: its rooms only
    assert inboxB.messages == [b"two %d" % i for i in range(5)]
    assert [d.seq for d in inboxB.deliveries] == [1, 2, 3, 4, 5]  # each room numbers its own
    snapshot = await within(b.snapshot("two"))
    assert snapshot.epoch == inboxB.deliveries[0].epoch and snapshot.seq == 5
    assert [d.seq for d in snapshot.history] == [1, 2, 3, 4, 5]  # a's config keeps 50
    b.unwatch("two")
    probe = await within(RedisConnectionTo(redis))
    channels = await within(probe.command(b"PUBSUB", b"CHANNELS", b"txchat:*"))
    assert channels == [b"txchat:one"], "subscribed only while there are members"
    probe.transport.loseConnection()
    await probe.lost
    await DeferredList([a.stop(), b.stop()])


@pytest.mark.cluster
@pytest_twisted.ensureDeferred
async def test_the_scripts_json_carries_any_text_name_and_count_exactly(redis: RedisServer) -> None:
    a, inboxA = await startBroker(redis.url)
    b, _ = await startBroker(redis.url)
    text, name = 'quote " backslash \\ slash / 日本 😀 ]}, "m"', 'Ada "the" \\ /'
    a.publish(Delivery("lobby", text.encode(), name, 1_764_534_000_123))
    await inboxA.count(1)
    (got,) = inboxA.deliveries
    assert (got.text.decode(), got.name, got.time, got.seq) == (text, name, 1_764_534_000_123, 1)
    said = inboxA.nextPresence()
    b.setOnline("lobby", 3)
    await said
    assert inboxA.presence == [("lobby", b.process, 3)]
    snapshot = await within(a.snapshot("lobby"))
    assert snapshot.history == [got] and snapshot.others == {b.process: 3}
    await DeferredList([a.stop(), b.stop()])


@pytest_twisted.ensureDeferred
async def test_a_snapshot_says_how_long_ago_each_other_process_said_its_count(redis: RedisServer) -> None:
    a, _ = await startBroker(redis.url, rooms=("r",))
    b, _ = await startBroker(redis.url, rooms=("r",))
    a.setOnline("r", 2)
    snapshot = await within(b.snapshot("r"))
    assert snapshot.others == {a.process: 2}
    assert 0 <= snapshot.ages[a.process] < 1, "Redis's own clock: said just now"
    await DeferredList([a.stop(), b.stop()])


@pytest_twisted.ensureDeferred
async def test_a_resend_on_another_process_is_acked_with_the_first_number_and_not_delivered(
        redis: RedisServer) -> None:
    a, inboxA = await startBroker(redis.url)
    b, inboxB = await startBroker(redis.url)
    send = Delivery("lobby", b"once", "Ada", 0, sender="a:client-1", ref="id-1")
    # The first and a resend in flight at once, then a resend on the other process.
    first, again = await within(DeferredList([a.post(send), a.post(send)]))
    elsewhere = await within(b.post(send))
    other = await within(b.post(Delivery("lobby", b"another sender", "", 0, sender="a:client-2", ref="id-1")))
    await inboxA.count(2)
    await inboxB.count(2)
    epoch = inboxA.deliveries[0].epoch
    assert first == again == (True, (epoch, 1))
    assert elsewhere == (epoch, 1) and other == (epoch, 2)
    assert inboxB.messages == [b"once", b"another sender"]
    assert (inboxB.deliveries[0].sender, inboxB.deliveries[0].ref) == ("a:client-1", "id-1")
    assert inboxA.messages == inboxB.messages
    await DeferredList([a.stop(), b.stop()])


@pytest_twisted.ensureDeferred
async def test_with_a_chat_log_each_numbered_message_is_added_to_the_log_stream_in_the_same_step(
        redis: RedisServer) -> None:
    a, inbox = await startBroker(redis.url)
    a.archive = _NoArchive()
    a.publish(Delivery("lobby", b"line one\nline two", "Ada", 1234, sender="u:ada"))
    await inbox.count(1)
    probe = await within(RedisConnectionTo(redis))
    entries = await within(probe.command(b"XRANGE", b"txchat:log", b"-", b"+"))
    (_, fields), = entries
    got = dict(zip(fields[::2], fields[1::2]))
    assert got == {b"room": b"lobby", b"epoch": inbox.deliveries[0].epoch.encode(), b"seq": b"1",  # type: ignore[union-attr]
                   b"time": b"1234", b"name": b"Ada", b"text": b"line one\nline two", b"from": b"u:ada", b"ref": b""}
    probe.transport.loseConnection()
    await probe.lost
    await a.stop()


class _NoArchive:
    """A chat log that is on, and empty (what reaches it is the log stream's business)."""

    def page(self, room: str, before: Any, limit: int) -> Any:
        raise NotImplementedError

    def after(self, room: str, epoch: str, seq: int, limit: int) -> Any:
        raise NotImplementedError

    def delete(self, room: str, epoch: str, seq: int, known: bool = False) -> Any:
        raise NotImplementedError

    def setRead(self, identity: str, room: str, position: Any) -> Any:
        raise NotImplementedError

    def read(self, identity: str, room: str) -> Any:
        raise NotImplementedError

    def prune(self, olderThan: int) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest_twisted.ensureDeferred
async def test_random_sends_and_resends_on_either_process_deliver_each_id_once_with_its_acked_number(
        redis: RedisServer, seed: int) -> None:
    import random

    rng = random.Random(seed)
    brokers = [await startBroker(redis.url) for _ in range(2)]
    posted: list[Deferred[Any]] = []
    acks: list[tuple[str, Any]] = []
    ids: list[str] = []
    for _ in range(300):
        if ids and rng.random() < 0.4:
            ref = rng.choice(ids)  # a resend: its ack was lost, or it never arrived
        else:
            ref = f"id-{len(ids)}"
            ids.append(ref)
        broker, _ = rng.choice(brokers)
        def acked(numbered: Any, ref: str = ref) -> None:
            acks.append((ref, numbered))

        posted.append(broker.post(Delivery("lobby", ref.encode(), "", 0, sender="a:the-sender", ref=ref))
                      .addCallback(acked))
        if rng.random() < 0.2:
            await within(posted[-1])  # now and then, let the sends in flight land
    await within(DeferredList(posted, fireOnOneErrback=True))
    assert len(acks) == len(posted)
    for _, inbox in brokers:
        await inbox.count(len(ids))
    first: dict[str, tuple[str, int]] = {}
    for ref, numbered in acks:
        assert first.setdefault(ref, numbered) == numbered, "every ack of an ID names its first number"
    for _, inbox in brokers:
        assert sorted(inbox.messages) == sorted(ref.encode() for ref in ids), "each ID delivered exactly once"
        assert {d.text.decode(): (d.epoch, d.seq) for d in inbox.deliveries} == first
    await DeferredList([broker.stop() for broker, _ in brokers])


@pytest_twisted.ensureDeferred
async def test_a_burst_into_a_redis_that_knows_no_script_yet_is_numbered_in_the_order_sent(redis: RedisServer) -> None:
    """A Redis that started empty (or was restarted) has no script cached: a burst of sends
    must still be numbered in the order this process sent them."""
    flusher, _ = await startBroker(redis.url, rooms=())
    connection = flusher._publisher.connection
    assert connection is not None
    await connection.command(b"SCRIPT", b"FLUSH")
    await flusher.stop()
    broker, inbox = await startBroker(redis.url)
    sent = [b"m%d" % i for i in range(300)]
    for i, text in enumerate(sent):  # as a client's frames come: a few each reactor turn
        broker.publish(message(text))
        if i % 10 == 9:
            await deferLater(reactor, 0, lambda: None)
    await inbox.count(300)
    assert inbox.messages == sent
    assert [d.seq for d in inbox.deliveries] == list(range(1, 301))
    await broker.stop()
