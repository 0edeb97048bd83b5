"""People across two ``twistd -n txchat`` processes with Redis (SPEC §18): one member list,
a killed process's members gone within 30 s, moderation on one process acting on the other."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from contextlib import ExitStack
from typing import Any, Callable, Iterator, cast

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from bench.processes import Twistd
from bench.redisserver import RedisServer
from tests.support.blocking import KEY, SECRET, api, token, v1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, list[Twistd]]]:
    redis = RedisServer(tmp_path).start()
    nodes = [Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, "--api-key", KEY,
                    "--token-secret", SECRET, "--history", "10", cwd=tmp_path) for _ in range(2)]
    try:
        for node in nodes:
            node.waitFor("connected to Redis")
        yield redis, nodes
    finally:
        for node in nodes:
            node.stop()
        redis.stop()


def join(node: Twistd, sub: str, room: str = "team") -> ClientConnection:
    return v1(node.port, room, f"token={token(sub=sub, name=sub.title())}")


def until(client: ClientConnection, wanted: Callable[[dict[str, Any]], bool], seconds: float = 10) -> dict[str, Any]:
    """The first line the client gets that is C{wanted}, within C{seconds}."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no such line in time")
        for raw in cast(str, client.recv(timeout=left)).split("\n"):
            line = json.loads(raw)
            if wanted(line):
                return cast(dict[str, Any], line)


def members(node: Twistd, room: str = "team") -> list[str]:
    status, answer = api(node.port, "GET", f"/api/rooms/{room}/members")
    assert status == 200, answer
    assert answer["users"] == len(answer["members"])
    return [m["from"] for m in answer["members"]]


def closedWith(client: ClientConnection) -> int | None:
    try:
        while True:
            client.recv(timeout=10)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd is not None else None


def test_one_member_list_and_a_killed_process_s_members_go_within_30s(
        cluster: tuple[RedisServer, list[Twistd]]) -> None:
    _, (one, two) = cluster
    with join(two, "bob") as bob:
        until(bob, lambda line: line["type"] == "welcome")
        tabs = ExitStack()
        for _ in range(2):  # two tabs: one person
            tabs.enter_context(join(one, "ann"))
        line = until(bob, lambda line: line["type"] == "presence" and line["users"] == 2)
        assert "joined" in line
        until(bob, lambda line: line["type"] == "presence" and line["online"] == 3)
        assert members(one) == members(two) == ["u:ann", "u:bob"]
        with join(one, "cat") as cat:
            welcome = until(cat, lambda line: line["type"] == "welcome")
            assert (welcome["users"], welcome["online"]) == (3, 4)
        until(bob, lambda line: line["type"] == "presence" and line.get("left") == ["u:cat"])
        killed = time.monotonic()
        one.process.send_signal(signal.SIGKILL)
        one.process.wait()
        line = until(bob, lambda line: line["type"] == "presence" and line["users"] == 1, seconds=30)
        assert line["online"] == 1 and line["left"] == ["u:ann"]
        assert time.monotonic() - killed < 30
        assert members(two) == ["u:bob"]
        tabs.close()


def test_disconnect_and_ban_on_one_process_act_on_the_other(cluster: tuple[RedisServer, list[Twistd]]) -> None:
    _, (one, two) = cluster
    with join(two, "bob") as bob, join(two, "bob", "garden") as bobElsewhere:
        assert api(one.port, "POST", "/api/users/bob/disconnect") == (202, {"disconnected": None})
        assert closedWith(bob) == closedWith(bobElsewhere) == 4003
    with join(two, "carl") as carl, join(two, "dan") as dan:
        status, answer = api(one.port, "POST", "/api/rooms/team/bans", {"sub": "carl", "seconds": 60})
        assert status == 201 and answer["closed"] == 0  # (none on the process that answered)
        assert closedWith(carl) == 4003
        for node in (one, two):
            with pytest.raises(InvalidStatus) as refused, join(node, "carl"):
                pass
            assert refused.value.response.status_code == 403
        with join(two, "carl", "garden"):  # another room
            pass
        dan.ping().wait(10)  # untouched
    assert api(one.port, "DELETE", "/api/rooms/team/bans/carl") == (200, {"room": "team", "sub": "carl", "lifted": True})
    for attempt in range(100):  # the lift reaches the other process on the control channel
        try:
            with join(two, "carl"):
                break
        except InvalidStatus:
            continue
    else:
        raise AssertionError("still banned on the other process")


def test_a_delete_on_one_process_reaches_members_on_both_and_leaves_the_window(
        cluster: tuple[RedisServer, list[Twistd]]) -> None:
    _, (one, two) = cluster
    with join(one, "ann") as ann, join(two, "bob") as bob:
        welcome = until(bob, lambda line: line["type"] == "welcome")
        for text in ("one", "two", "three"):
            ann.send(text)
        until(bob, lambda line: line.get("text") == "three")
        until(ann, lambda line: line.get("text") == "three")
        epoch = welcome["epoch"]
        assert api(one.port, "DELETE", f"/api/rooms/team/messages/2?epoch={epoch}") == (
            200, {"deleted": {"epoch": epoch, "seq": 2}})
        for member in (ann, bob):
            assert until(member, lambda line: line["type"] != "presence") == {"type": "delete", "epoch": epoch, "seq": 2}
        for node in (one, two):
            status, page = api(node.port, "GET", "/api/rooms/team/history?limit=10")
            assert [m["seq"] for m in page["messages"]] == [1, 3]
        assert api(two.port, "DELETE", f"/api/rooms/team/messages/2?epoch={epoch}")[0] == 404
        bob.send("after")  # the next line either gets is that message: the delete came once
        for member in (ann, bob):
            assert until(member, lambda line: line["type"] != "presence")["text"] == "after"
