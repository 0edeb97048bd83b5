"""The Redis broker's address parsing and its reconnect schedule, on a task.Clock."""

from __future__ import annotations

from typing import cast

import pytest
from twisted.application.internet import backoffPolicy
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from txchat.redisbroker import RedisAddress, RedisBroker


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
