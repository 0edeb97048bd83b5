"""txchat.v2 over real sockets: the subprotocol chosen, a send acked, a too-long text answered
with an error line, and the connection's own 64 KiB limit (1009 beyond it, 1009 at the
--max-message-size for a v1 connection on the same server)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import pytest_twisted

from tests.support.live import Server, connect, within


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    s = await Server(maxMessageSize=512, rateLimit=0).start()
    yield s
    await s.stop()


def send(ref: str, text: str) -> str:
    return json.dumps({"type": "send", "id": ref, "text": text})


@pytest_twisted.ensureDeferred
async def test_v2_over_real_sockets(server: Server) -> None:
    v2 = await connect(server, path="/ws/live?cid=live-client", protocols=["txchat.v1", "txchat.v2"])
    v1 = await connect(server, path="/ws/live", protocols=["txchat.v1"])
    assert (v2.websocket_protocol_in_use, v1.websocket_protocol_in_use) == ("txchat.v2", "txchat.v1")
    welcome = json.loads((await v2.receive(1))[0])
    assert welcome["type"] == "welcome"
    assert json.loads((await v1.receive(1))[0])["type"] == "welcome"

    v2.say(send("m1", "x" * 513))  # over --max-message-size: an error line, not a close
    v2.say(send("m2", "two\nlines"))
    seen: list[dict[str, Any]] = []
    while not any(line.get("type") == "ack" for line in seen):
        seen += [json.loads(line) for line in await v2.receive(1)]
    answers = [line for line in seen if line["type"] in ("error", "ack", "message")]
    # The room's messages of a flush first, then this member's own answers, in the order asked.
    assert answers == [
        {"type": "message", "seq": 1, "time": answers[0]["time"], "name": "", "text": "two\nlines", "from": "a:live-client"},
        {"type": "error", "id": "m1", "code": "too-long", "message": "text is 513 bytes; at most 512", "limit": 512},
        {"type": "ack", "id": "m2", "epoch": welcome["epoch"], "seq": 1},
    ]
    got: list[dict[str, Any]] = []
    while not got:
        got = [line for line in map(json.loads, await v1.receive(1)) if line["type"] == "message"]
    assert got[0]["text"] == "two\nlines"

    v2.say(send("big", "x" * 60_000))  # under 64 KiB: still an answer
    seen = []
    while not seen:
        seen = [line for line in map(json.loads, await v2.receive(1)) if line["type"] == "error"]
    assert seen[0]["code"] == "too-long"

    v2.say(send("huge", "x" * 70_000))  # over 64 KiB: closed
    v1.say("y" * 513)  # a v1 connection keeps --max-message-size
    assert (await within(v2.closed))[0] == 1009
    assert (await within(v1.closed))[0] == 1009
