"""People across hubs that share a real redis-server, in this test's reactor (SPEC §18): read
positions follow an identity to its other processes, and a process that stops saying who it
has is forgotten with the staleness settings shortened. Members are in-memory peers."""

from __future__ import annotations

from typing import Any, Callable

import jwt
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from bench.redisserver import RedisServer
from tests.support.memory import MemoryHub, V1Peer, roomOf
from tests.support.redis import redis  # noqa: F401  (a fixture)
from txchat.chatlog import Head
from txchat.config import Config
from txchat.redisbroker import RedisBroker

SECRET = "one identity, several processes at once"


async def startHub(url: str, **config: Any) -> MemoryHub:
    settings = Config(**{"history": 10, "tokenSecret": SECRET, "presenceRefresh": 0.3, "presenceStale": 1.0,
                         **config})
    broker = RedisBroker(url, reactor, settings)
    hub = MemoryHub(settings, reactor, broker)
    hub.startBroker()
    await broker.when("up")
    return hub


async def stopHub(hub: MemoryHub) -> None:
    await hub.closeAll()
    await hub.broker.stop()


def join(hub: MemoryHub, sub: str, room: str = "r") -> V1Peer:
    return V1Peer(hub, room, f"token={jwt.encode({'sub': sub, 'name': sub.title()}, SECRET, algorithm='HS256')}")


async def eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    """Turn the reactor until C{check} holds (the peers' transports are read, not waited on)."""
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await deferLater(reactor, 0.02, lambda: None)
    assert check(), "not in time"


class Seen:
    """A peer's lines as they come."""

    def __init__(self, peer: V1Peer) -> None:
        self.peer = peer
        self.lines: list[dict[str, Any]] = []

    def of(self, kind: str) -> list[dict[str, Any]]:
        self.lines += self.peer.lines()
        return [line for line in self.lines if line["type"] == kind]


@pytest_twisted.ensureDeferred
async def test_a_read_position_follows_the_identity_to_its_other_processes(redis: RedisServer) -> None:
    one, two, three = [await startHub(redis.url) for _ in range(3)]
    here, there = Seen(join(one, "ann")), Seen(join(two, "ann"))
    await eventually(lambda: bool(here.of("welcome")) and bool(there.of("welcome")))
    for text in ("one", "two", "three"):
        here.peer.say(text)
    await eventually(lambda: len(there.of("message")) == 3)
    epoch = here.of("welcome")[0]["epoch"]
    assert one.setRead(here.peer.protocol, epoch, 2) is None
    await eventually(lambda: there.of("read") == [{"type": "read", "epoch": epoch, "seq": 2}])
    assert two.setRead(there.peer.protocol, epoch, 1) is None  # behind: nothing moves
    assert await two.broker.readOf("u:ann", "r") == Head(epoch, 2)  # type: ignore[attr-defined]
    late = Seen(join(three, "ann"))  # a process that never saw ann: Redis knows
    await eventually(lambda: bool(late.of("welcome")))
    assert late.of("welcome")[0]["read"] == f"{epoch}:2"
    assert here.of("read") == []
    for hub in (one, two, three):
        await stopHub(hub)


@pytest_twisted.ensureDeferred
async def test_a_process_that_stops_saying_its_people_is_forgotten(redis: RedisServer) -> None:
    one, two = await startHub(redis.url), await startHub(redis.url)
    join(one, "ann")
    bob = Seen(join(two, "bob"))
    await eventually(lambda: roomOf(two, "r").users == 2)
    assert [m[0] for m in await two.roster.members("r")] == ["u:ann", "u:bob"]
    one.presence.stop()  # it says nothing more, as if it had died
    await one.broker.stop()
    await eventually(lambda: any(line.get("left") == ["u:ann"] for line in bob.of("presence")), seconds=5)
    assert roomOf(two, "r").users == 1 and bob.of("presence")[-1]["users"] == 1
    assert [m[0] for m in await two.roster.members("r")] == ["u:bob"]
    await one.closeAll()
    await stopHub(two)


@pytest_twisted.ensureDeferred
async def test_bans_said_or_lifted_while_a_process_was_cut_off_hold_there_once_redis_is_back(
        redis: RedisServer) -> None:  # noqa: F811
    a, b = await startHub(redis.url), await startHub(redis.url)
    try:
        zed = join(b, "zed")
        await eventually(lambda: zed.open)
        # Said in Redis while b heard nothing (no control message): b learns it when Redis is back.
        await a.broker.ban("r", "zed", 60)  # type: ignore[attr-defined]
        assert not b.roster.banned("r", "zed")
        b.roster.reconnected()
        await eventually(lambda: b.roster.banned("r", "zed") and zed.closeCode() == 4003)
        await a.broker.lift("r", "zed")  # type: ignore[attr-defined]
        b.roster.reconnected()
        await eventually(lambda: not b.roster.banned("r", "zed"))
    finally:
        await stopHub(a)
        await stopHub(b)
