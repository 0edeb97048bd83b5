"""Signed identities and the server API across two ``twistd -n txchat`` processes with Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from bench.processes import Twistd
from bench.redisserver import RedisServer
from tests.support.blocking import KEY, api, lines, v1


def test_a_post_to_one_process_reaches_members_on_the_other_with_its_number(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    nodes = [Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, "--api-key", KEY, cwd=tmp_path)
             for _ in range(2)]
    try:
        for node in nodes:
            node.waitFor("connected to Redis")
        one, two = nodes
        with v1(two.port, "orders", "name=Bea") as bea:
            welcome = json.loads(cast(str, bea.recv(timeout=10)).split("\n")[0])
            bea.send("waiting for news")
            lines(bea, 1)
            status, answer = api(one.port, "POST", "/api/rooms/orders/messages", {"text": "Shipped!", "name": "Shop"})
            assert status == 201 and answer == {"epoch": welcome["epoch"], "seq": 2}
            (posted,) = lines(bea, 1)
            assert (posted["seq"], posted["name"], posted["text"]) == (2, "Shop", "Shipped!")
            # The process with nobody in the room still reads it from Redis.
            assert api(one.port, "GET", "/api/rooms/orders") == (
                200, {"room": "orders", "epoch": welcome["epoch"], "seq": 2, "online": 1})
            status, history = api(one.port, "GET", "/api/rooms/orders/history")
            assert [(m["seq"], m["text"]) for m in history["messages"]] == [(1, "waiting for news"), (2, "Shipped!")]
        redis.stop()
        one.waitFor("unreachable")
        assert api(one.port, "GET", "/api/rooms/orders")[0] == 503
        status, answer = api(one.port, "POST", "/api/rooms/orders/messages", {"text": "during the outage"})
        assert (status, answer) == (201, {"epoch": None, "seq": None})
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
