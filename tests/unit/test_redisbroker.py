"""The Redis broker's address parsing and its reconnect schedule, on a task.Clock."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from twisted.application.internet import backoffPolicy
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from tests.support.fakeredis import Link, dial
from tests.support.memoryredis import MemoryRedis
from txchat.broker import NotPublished
from txchat.redisbroker import RedisAddress, RedisBroker
from txchat.stream import Delivery


def test_url_parsing() -> None:
    assert RedisAddress.fromURL("redis://h") == RedisAddress("h", 6379)
    assert RedisAddress.fromURL("redis://:s%40cret@h:7000/3") == RedisAddress("h", 7000, None, "s@cret", 3)
    assert RedisAddress.fromURL("rediss://user:pw@h:6380") == RedisAddress("h", 6380, "user", "pw", 0, True)
    for bad in ("http://h", "redis://", "redis://h:0", "redis://h:x", "redis://h/db"):
        with pytest.raises(ValueError):
            RedisAddress.fromURL(bad)


def test_reconnect_backoff_is_exponential_capped_and_on_the_injected_clock() -> None:
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    clock = MemoryReactorClock()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=backoffPolicy(0.2, 5.0, 2.0, jitter=lambda: 0))
    broker.start(lambda message: None, lambda room, process, count: None)

    def refuseAll() -> int:
        attempts = clock.tcpClients[:]
        del clock.tcpClients[:]
        for _, _, factory, _, _ in attempts:
            factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))  # type: ignore[arg-type]
        clock.advance(0)  # the connection's Deferred fails in the next reactor turn
        return len(attempts)

    assert refuseAll() == 2  # publisher and subscriber
    assert broker.state == "down"
    delays = []
    for _ in range(8):
        (pending,) = {round(c.getTime() - clock.seconds(), 3) for c in clock.getDelayedCalls()}
        delays.append(pending)
        clock.advance(pending)
        assert refuseAll() == 2
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    broker.stop()
    globalLogPublisher.removeObserver(observer)
    assert clock.getDelayedCalls() == []
    outages = [e for e in events if "unreachable" in e.get("log_format", "")]
    assert len(outages) == 1, "the outage is logged once, not once per retry"
    assert not [e for e in events if "factory" in formatEvent(e).lower()], "no Twisted factory lines per retry"


def test_a_new_subscription_begins_with_both_connections_and_tells_the_hub_before_it_brings_anything() -> None:
    clock = MemoryReactorClock()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=lambda attempt: 1.0)
    events: list[object] = []
    broker.start(lambda message: events.append(message.seq), lambda room, process, count: None,
                 lambda: events.append("reconnected"))
    broker.watch("r")
    publisher, subscriber = dial(clock)
    assert subscriber.commands() == [[b"SUBSCRIBE", b"txchat:r"], [b"PING"]]
    assert broker.state == "starting", "up once Redis has confirmed the channels"
    subscriber.reply([b"subscribe", b"txchat:r", 1], [b"message", b"txchat:r", _payload(1)], [b"pong", b""])
    assert broker.state == "up" and events == [1]
    for first, second in ((0, 1), (1, 0)):  # Redis restarts; the connections come back one at a time
        publisher.lose()
        subscriber.lose()
        assert broker.state == "down"
        clock.advance(1.0)
        (early,) = dial(clock, first)
        assert early.commands() == [], "no channel before both connections are back"
        (late,) = dial(clock)
        publisher, subscriber = (early, late) if first == 0 else (late, early)
        # In the same call: the hub heard of it (its rooms hold what comes until they have
        # caught up), and only then can the new subscription bring anything.
        assert events[-1] == "reconnected"
        assert subscriber.commands() == [[b"SUBSCRIBE", b"txchat:r"], [b"PING"]]
        assert broker.state == "down"
        broker.publish(Delivery("r", b"meanwhile", "", 0))
        assert events[-1] is None and publisher.commands() == [], "delivered here, unnumbered, until confirmed"
        subscriber.reply([b"subscribe", b"txchat:r", 1], [b"message", b"txchat:r", _payload(5)], [b"pong", b""])
        assert events[-3:] == ["reconnected", None, 5]
        assert broker.state == "up" and events.count("reconnected") == (1 if first == 0 else 2)
    broker.stop()
    publisher.lose()  # the transports close (a string transport only records that it was asked)
    subscriber.lose()
    assert clock.getDelayedCalls() == []


def test_a_subscription_that_outlives_the_outage_goes_on_and_the_hub_hears_when_the_publisher_is_back() -> None:
    clock = MemoryReactorClock()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=lambda attempt: 1.0)
    events: list[object] = []
    broker.start(lambda message: events.append(message.seq), lambda room, process, count: None,
                 lambda: events.append("reconnected"))
    broker.watch("a")
    publisher, subscriber = dial(clock)
    subscriber.commands()
    subscriber.reply([b"subscribe", b"txchat:a", 1], [b"pong", b""])
    publisher.lose()
    assert broker.state == "down"
    broker.watch("b")
    broker.unwatch("a")
    assert subscriber.commands() == [[b"SUBSCRIBE", b"txchat:b"], [b"UNSUBSCRIBE", b"txchat:a"]]
    subscriber.reply([b"message", b"txchat:b", _payload(3)])
    assert events == [3]
    clock.advance(1.0)
    dial(clock)
    assert broker.state == "up" and events == [3, "reconnected"]
    assert subscriber.commands() == []
    broker.stop()


def test_waiting_for_redis_to_confirm_the_channels_is_still_starting_not_an_outage() -> None:
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        clock = MemoryReactorClock()
        broker = RedisBroker("redis://127.0.0.1:6390", clock)
        broker.start(lambda message: None, lambda room, process, count: None)
        publisher, subscriber = dial(clock)
        assert broker.state == "starting"
        subscriber.reply([b"pong", b""])
        assert broker.state == "up"
        broker.stop()
    finally:
        globalLogPublisher.removeObserver(observer)
    said = [formatEvent(e) for e in events if "Redis at" in e.get("log_format", "")]
    assert said == ["connected to Redis at redis://127.0.0.1:6390/0: cross-process delivery is on"]


def test_a_snapshot_whose_publisher_goes_while_the_subscriber_confirms_is_none_not_never() -> None:
    clock = MemoryReactorClock()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=lambda attempt: 1.0)
    broker.start(lambda message: None, lambda room, process, count: None)
    broker.watch("r")
    publisher, subscriber = dial(clock)
    subscriber.reply([b"subscribe", b"txchat:r", 1], [b"pong", b""])
    read: list[object] = []
    broker.snapshot("r").addBoth(read.append)
    publisher.lose()
    subscriber.reply([b"pong", b""])
    assert read == [None]
    broker.stop()


def test_a_loss_during_the_catch_up_tells_the_hub_again_when_the_broker_is_up() -> None:
    clock = MemoryReactorClock()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=lambda attempt: 1.0)
    told: list[None] = []
    broker.start(lambda message: None, lambda room, process, count: None, lambda: told.append(None))
    publisher, subscriber = dial(clock)
    subscriber.reply([b"pong", b""])
    publisher.lose()
    subscriber.lose()
    clock.advance(1.0)
    publisher, subscriber = dial(clock)
    assert len(told) == 1  # the hub's rooms begin to catch up...
    publisher.lose()  # ...and what they read may never come
    subscriber.reply([b"pong", b""])
    clock.advance(1.0)
    dial(clock)
    assert broker.state == "up" and len(told) == 2
    broker.stop()


def _payload(seq: int) -> bytes:
    return json.dumps(["m", "E", seq, 1000, "", "m%d" % seq]).encode()


class _Inbox:
    """The broker's deliveries, in order."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def __call__(self, message: Delivery) -> None:
        self.deliveries.append(message)

    def onPresence(self, room: str, process: str, count: int) -> None:
        pass


def message(text: bytes, room: str = "lobby") -> Delivery:
    return Delivery(room, text, "", 0)


def run(clock: MemoryReactorClock, seconds: float, redis: MemoryRedis | None = None) -> None:
    """Advance in steps of a millisecond; the in-memory Redis, if given, takes each connection
    attempt at once."""
    for _ in range(round(seconds * 1000)):
        if redis is not None:
            redis.accept(clock)
        clock.advance(0.001)


def test_a_silent_redis_is_an_outage_within_3s_and_local_chat_goes_on_unnumbered() -> None:
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    clock = MemoryReactorClock()
    redis = MemoryRedis(clock)
    inbox = _Inbox()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=backoffPolicy(0.2, 5.0, 2.0, jitter=lambda: 0))
    broker.start(inbox, inbox.onPresence)
    broker.watch("lobby")
    run(clock, 0.1, redis)
    assert broker.state == "up"
    broker.publish(message(b"numbered"))
    run(clock, 0.1, redis)
    assert [(d.text, d.seq) for d in inbox.deliveries] == [(b"numbered", 1)]

    redis.silent = True  # stopped, or cut off without a reset
    silent = clock.seconds()
    broker.publish(message(b"into the silence"))
    while broker.state == "up":
        run(clock, 0.001, redis)
        assert clock.seconds() - silent <= 3.0 + 0.002, "SPEC §13: an outage after at most 3 s"
    assert broker.lost == 1, "the message waiting for Redis is counted lost, as with a closed connection"
    broker.publish(message(b"alone"))
    assert [(d.text, d.seq) for d in inbox.deliveries[1:]] == [(b"alone", None)], "local chat, unnumbered"
    for _ in range(15000):  # reconnect attempts reach it, and it answers none of them
        run(clock, 0.001, redis)
        assert broker.state == "down", "a connection counts only once Redis has answered on it"

    redis.silent = False
    run(clock, 6, redis)  # the next attempt (at most 5 s away) is answered
    assert broker.state == "up"
    broker.publish(message(b"back"))
    run(clock, 0.1, redis)
    assert [(d.text, d.seq) for d in inbox.deliveries[2:]] == [(b"back", 2)]
    broker.stop()
    clock.advance(0)
    globalLogPublisher.removeObserver(observer)
    assert clock.getDelayedCalls() == [], "the heartbeats stop with their connections"
    outages = [formatEvent(e) for e in events if "unreachable" in e.get("log_format", "")]
    assert len(outages) == 1 and "no reply from Redis for 3s" in outages[0]


def test_a_redis_that_answers_within_the_timeout_stays_up() -> None:
    clock = MemoryReactorClock()
    redis = MemoryRedis(clock)
    inbox = _Inbox()
    broker = RedisBroker("redis://127.0.0.1:6390", clock)
    broker.start(inbox, inbox.onPresence)
    broker.watch("lobby")
    run(clock, 0.1, redis)
    assert broker.state == "up"
    redis.lag = 2.5  # slow, but answering
    for i in range(10):
        broker.publish(message(b"%d" % i))
        run(clock, 1, redis)
    run(clock, 10, redis)
    assert broker.state == "up" and broker.lost == 0
    assert [d.seq for d in inbox.deliveries] == list(range(1, 11))
    broker.stop()
    clock.advance(0)
    assert clock.getDelayedCalls() == []


def test_a_resend_of_a_send_lost_with_its_connection_waits_for_redis_rather_than_going_out_twice() -> None:
    clock = MemoryReactorClock()
    redis = MemoryRedis(clock)
    inbox = _Inbox()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=backoffPolicy(0.2, 5.0, 2.0, jitter=lambda: 0))
    broker.start(inbox, inbox.onPresence)
    broker.watch("lobby")
    run(clock, 0.1, redis)
    redis.silent = True  # Redis has the send (it may number it) and answers nothing
    first: list[Any] = []
    broker.post(Delivery("lobby", b"maybe", "", 0, sender="a:client-01", ref="id-1")).addBoth(first.append)
    while broker.state == "up":
        run(clock, 0.01, redis)
    assert len(first) == 1 and isinstance(first[0], Failure), "the sender is told: unavailable"
    resent: list[Any] = []
    broker.post(Delivery("lobby", b"maybe", "", 0, sender="a:client-01", ref="id-1")).addBoth(resent.append)
    assert isinstance(resent[0], Failure) and resent[0].check(NotPublished)
    other: list[Any] = []
    broker.post(Delivery("lobby", b"new", "", 0, sender="a:client-01", ref="id-2")).addBoth(other.append)
    assert other == [None] and [d.text for d in inbox.deliveries] == [b"new"], "others still go out unnumbered"
    broker.stop()
    clock.advance(0)
    resent[0].trap(NotPublished)
    first[0].trap(Exception)


def _watching(*replies: Any) -> tuple[_Inbox, RedisBroker, Link, Link]:
    """A broker up and watching "lobby" (Redis confirmed the channel), and what Redis says next."""
    clock = MemoryReactorClock()
    inbox = _Inbox()
    broker = RedisBroker("redis://127.0.0.1:6390", clock, retryDelay=lambda attempt: 1.0)
    broker.start(inbox, inbox.onPresence)
    broker.watch("lobby")
    publisher, subscriber = dial(clock)
    subscriber.commands()
    subscriber.reply([b"subscribe", b"txchat:lobby", 1], [b"pong", b""], *replies)
    assert broker.state == "up"
    return inbox, broker, publisher, subscriber


def test_a_resend_while_its_first_copy_is_on_its_way_to_redis_gets_that_copy_s_answer_not_a_second_delivery() -> None:
    """The subscriber's connection goes (Redis is away for this process) while the publisher
    still carries a send Redis will number: a resend of it then is not delivered here
    unnumbered, which would make it twice once the numbered copy is caught up with."""
    inbox, broker, publisher, subscriber = _watching()
    first: list[Any] = []
    broker.post(Delivery("lobby", b"once", "", 0, sender="a:client-01", ref="id-1")).addBoth(first.append)
    assert [c[0] for c in publisher.commands()] == [b"EVALSHA"] and first == []
    subscriber.lose()
    assert broker.state == "down"
    resent: list[Any] = []
    broker.post(Delivery("lobby", b"once", "", 0, sender="a:client-01", ref="id-1")).addBoth(resent.append)
    assert resent == [] and inbox.deliveries == [], "the resend waits for the first copy's answer"
    publisher.reply([b"e1", 7])
    assert first == resent == [("e1", 7)]
    again: list[Any] = []
    broker.post(Delivery("lobby", b"once", "", 0, sender="a:client-01", ref="id-1")).addBoth(again.append)
    assert again == [("e1", 7)] and publisher.commands() == [], "a numbered send is known here"
    other: list[Any] = []
    broker.post(Delivery("lobby", b"new", "", 0, sender="a:client-01", ref="id-2")).addBoth(other.append)
    assert other == [None] and [d.text for d in inbox.deliveries] == [b"new"], "new sends still go out unnumbered"
    broker.stop()


def test_followers_of_a_first_copy_whose_connection_goes_are_told_to_try_again_and_it_is_in_doubt() -> None:
    inbox, broker, publisher, subscriber = _watching()
    answers: list[Any] = []
    for _ in range(2):
        broker.post(Delivery("lobby", b"maybe", "", 0, sender="a:c", ref="id-1")).addBoth(answers.append)
    publisher.lose()
    assert len(answers) == 2 and all(isinstance(a, Failure) and a.check(NotPublished) for a in answers)
    later: list[Any] = []
    broker.post(Delivery("lobby", b"maybe", "", 0, sender="a:c", ref="id-1")).addBoth(later.append)
    assert isinstance(later[0], Failure) and later[0].check(NotPublished), "in doubt until Redis is back"
    assert inbox.deliveries == []
    broker.stop()
    for answer in answers + later:
        answer.trap(NotPublished)


def test_a_resend_of_a_send_another_process_numbered_gets_that_number_while_redis_is_away_here() -> None:
    """The client's first copy went through another process (its connection there went before
    the ack); this process delivered the numbered copy from the subscription, then lost Redis:
    the resend, arriving here, is answered with that number instead of going out again."""
    numbered = json.dumps(["m", "E", 27, 1000, "Ann", "once", "a:client-01", "id-27"]).encode()
    inbox, broker, publisher, subscriber = _watching([b"message", b"txchat:lobby", numbered])
    assert [(d.seq, d.ref) for d in inbox.deliveries] == [(27, "id-27")]
    subscriber.lose()
    assert broker.state == "down"
    resent: list[Any] = []
    broker.post(Delivery("lobby", b"once", "Ann", 0, sender="a:client-01", ref="id-27")).addBoth(resent.append)
    assert resent == [("E", 27)] and len(inbox.deliveries) == 1, "answered with its number, not delivered again"
    broker.stop()
