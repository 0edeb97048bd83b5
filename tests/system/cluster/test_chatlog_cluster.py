"""A cluster's chat log (SPEC §16): two ``twistd txchat --redis --store postgresql://``, one of
them SIGKILLed right after numbering while PostgreSQL is stopped for 30 s; once it is back, the
log holds every numbered message exactly once, and serves recovery and scrollback."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.request import Request, urlopen

import psycopg
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from bench.postgresserver import PostgresServer
from bench.processes import Twistd, cleanEnvironment, twistdArgs
from bench.redisserver import RedisServer
from tests.support.postgres import postgresServer, postgresURL  # noqa: F401  (fixtures)

KEY = "a-key-for-the-cluster-test-0123"


def v1(node: Twistd, since: str | None = None) -> ClientConnection:
    query = f"?since={since}" if since else ""
    return wsConnect(f"ws://127.0.0.1:{node.port}/ws/log{query}", subprotocols=[Subprotocol("txchat.v1")])


def messages(client: ClientConnection, count: int, into: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The next C{count} welcome and message lines."""
    got = into if into is not None else []
    start = len(got)
    while len(got) - start < count:
        frame = client.recv(timeout=20)
        assert isinstance(frame, str)
        got.extend(line for line in map(json.loads, frame.split("\n")) if line["type"] in ("welcome", "message"))
    return got[start:]


def logged(url: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT epoch, seq, text FROM messages WHERE room = 'log' AND NOT deleted "
                         "ORDER BY epoch, seq").fetchall()
    return [(epoch, int(seq), text) for epoch, seq, text in rows]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_every_numbered_message_reaches_postgresql_once_through_a_kill_and_an_outage(
        tmp_path: Path, redis: RedisServer, postgresServer: PostgresServer, postgresURL: str) -> None:  # noqa: F811
    options = ("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, "--store", postgresURL,
               "--api-key", KEY)
    one = Twistd(*options, cwd=tmp_path)
    two = Twistd(*options, cwd=tmp_path)
    try:
        for node in (one, two):
            node.waitFor("connected to Redis")
        watcher = v1(one)
        seen: list[dict[str, Any]] = []
        (welcome,) = messages(watcher, 1, seen)
        epoch = welcome["epoch"]
        with v1(one) as a:
            for i in range(50):
                a.send(f"before {i}")
            messages(watcher, 50, seen)

        postgresServer.stop()  # down for 30 s: chat goes on, the log waits in Redis
        with v1(two) as b:
            messages(b, 1)
            for i in range(30):
                b.send(f"during {i}")
            messages(watcher, 30, seen)  # numbered and delivered: now kill the process that numbered them
            two.process.kill()
            two.process.wait()
        with v1(one) as a:
            for i in range(20):
                a.send(f"still {i}")
            messages(watcher, 20, seen)
        assert [m["seq"] for m in seen[1:]] == list(range(1, 101))
        stopped = threading.Event()
        stopped.wait(30)
        postgresServer.start()

        # The surviving process writes what it numbered and, once they have been idle for 30 s,
        # takes over the entries the killed one had read and not written.
        one.waitFor("written again", timeout=60)
        expected = [(epoch, m["seq"], m["text"]) for m in seen[1:]]
        done = threading.Event()
        for _ in range(600):
            if logged(postgresURL) == expected:
                break
            done.wait(0.1)
        assert logged(postgresURL) == expected, "every numbered message exactly once"

        # The log serves what Redis no longer keeps: a client that saw only the first five
        # recovers all 95 it missed (Redis keeps the newest 50), and scrollback reaches the first.
        with v1(one, f"{epoch}:5") as late:
            back = messages(late, 96)
        assert back[0]["recovered"] is True and [m["seq"] for m in back[1:]] == list(range(6, 101))
        request = Request(f"http://127.0.0.1:{one.port}/api/rooms/log/history?before={epoch}:51&limit=200",
                          headers={"Authorization": f"Bearer {KEY}"})
        with urlopen(request, timeout=10) as response:
            page = json.load(response)
        assert [m["text"] for m in page["messages"]] == [f"before {i}" for i in range(50)] and page["more"] is False, (
            page, seen[:52])

        # A message older than Redis keeps is deleted from the log, and members are told.
        delete = Request(f"http://127.0.0.1:{one.port}/api/rooms/log/messages/3?epoch={epoch}", method="DELETE",
                         headers={"Authorization": f"Bearer {KEY}"})
        with urlopen(delete, timeout=10) as response:
            assert response.status == 200
        told: list[dict[str, Any]] = []
        while not told:
            frame = watcher.recv(timeout=10)
            assert isinstance(frame, str)
            told = [line for line in map(json.loads, frame.split("\n")) if line["type"] == "delete"]
        assert told == [{"type": "delete", "epoch": epoch, "seq": 3}]
        assert (epoch, 3, "before 2") not in logged(postgresURL) and len(logged(postgresURL)) == 99
        watcher.close()
    finally:
        one.stop()
        two.stop()


def test_a_wrong_postgresql_password_stops_start_up_with_one_line_naming_the_option(
        tmp_path: Path, redis: RedisServer, postgresServer: PostgresServer) -> None:  # noqa: F811
    wrong = postgresServer.url(password="not-the-password")
    done = subprocess.run(twistdArgs("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, "--store", wrong),
                          cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("twistd txchat: error: --store postgresql://txchat:***@127.0.0.1:") and \
        "password authentication failed" in line, done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
