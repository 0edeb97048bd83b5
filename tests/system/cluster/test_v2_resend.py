"""Sends that are never lost nor doubled across processes (SPEC §17): the documented txchat.v2
client types 200 lines through a relay that is cut three times, and the second time it comes
back on the other process: every line reaches the members on both processes exactly once, in the
order typed (Redis's script knows a resend, whichever process it comes to)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Iterator

import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from bench.processes import Twistd
from bench.redisserver import RedisServer
from tests.support.relay import Relay
from tests.system.process.test_docs_v2_client import Client

LINES = 200


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Twistd]]:
    redis = RedisServer(tmp_path).start()
    started: list[Twistd] = []
    try:
        for _ in range(2):
            started.append(Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, cwd=tmp_path))
        for node in started:
            node.waitFor("connected to Redis")
        yield started
    finally:
        for node in started:
            node.stop()
        redis.stop()


class Watcher:
    """A member of the room on one process: the texts it sees, in order, as they come."""

    def __init__(self, node: Twistd) -> None:
        self.socket: ClientConnection = wsConnect(f"ws://127.0.0.1:{node.port}/ws/resend",
                                                  subprotocols=[Subprotocol("txchat.v1")])
        self.seen: list[tuple[int, str]] = []
        self._news = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for frame in self.socket:
                for line in map(json.loads, str(frame).split("\n")):
                    if line["type"] == "message":
                        with self._news:
                            self.seen.append((line["seq"], line["text"]))
                            self._news.notify_all()
        except Exception:  # noqa: BLE001 - the socket closed at the end of the test
            pass

    def waitFor(self, text: str, timeout: float = 60) -> None:
        with self._news:
            assert self._news.wait_for(lambda: any(t == text for _, t in self.seen), timeout), self.seen[-5:]


def test_two_hundred_lines_through_three_cuts_and_a_move_to_the_other_process_arrive_once_in_order(
        tmp_path: Path, nodes: list[Twistd]) -> None:
    one, two = nodes
    relay = Relay(one.port)
    watchers = [Watcher(one), Watcher(two)]
    client = Client(f"ws://127.0.0.1:{relay.port}/ws/resend", tmp_path)
    texts = [f"line {i}" for i in range(LINES)]
    try:
        for cut, moveTo in ((50, None), (100, two), (150, None)):
            client.type(*texts[cut - 50:cut - 10])
            watchers[0].waitFor(texts[cut - 11])
            client.type(*texts[cut - 10:cut])  # on their way when the link goes
            relay.cut()
            relay.resume(moveTo.port if moveTo is not None else None)
        client.type(*texts[150:])
        assert client.process.stdin is not None
        client.process.stdin.close()
        assert client.process.wait(timeout=60) == 0, client.log  # everything it sent was acknowledged
        assert relay.accepted == 4
        for watcher in watchers:
            watcher.waitFor(texts[-1])
            assert [text for _, text in watcher.seen] == texts, "each line once, in the order typed"
            assert [seq for seq, _ in watcher.seen] == list(range(1, LINES + 1))
        assert watchers[0].seen == watchers[1].seen, "one numbering on both processes"
        # The watcher and the client's last two connections (after the second and third cuts).
        assert sum(" connect 127.0.0.1" in line for line in two.lines) == 3, two.log
    finally:
        if client.process.poll() is None:
            client.process.kill()
            client.process.wait()
        for watcher in watchers:
            watcher.socket.close()
        relay.close()
