"""The documented txchat.v2 client (docs/examples/v2_client.py, shown in docs/protocol.md)
against the installed ``twistd txchat``, through a relay the test cuts three times while lines
are being typed: every line must arrive exactly once, in the order typed, and the client must
exit once everything it sent is acknowledged."""

from __future__ import annotations

import json
import subprocess
from contextlib import ExitStack
import sys
from pathlib import Path

from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from bench.processes import LoggedProcess, Twistd, cleanEnvironment
from tests.support.relay import Relay

CLIENT = Path(__file__).resolve().parents[3] / "docs" / "examples" / "v2_client.py"
LINES = 40  # within the room's kept history (50), which the check reads back


class Client(LoggedProcess):
    """The example client as a reader would run it, typed into; its output is its log."""

    def __init__(self, url: str, cwd: Path) -> None:
        super().__init__([sys.executable, str(CLIENT), url, "Ada"], cwd, cleanEnvironment(), stdin=subprocess.PIPE)

    def _waitForPort(self) -> int:
        return 0

    def type(self, *lines: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write("".join(line + "\n" for line in lines))
        stdin.flush()


def sendFrameSize(text: str) -> int:
    """The bytes of the client's frame for a send of C{text} (a 32-digit ID; masked, under 126)."""
    return 6 + len(json.dumps({"type": "send", "id": "0" * 32, "text": text}))


def test_the_documented_v2_client_delivers_every_line_once_across_cuts(tmp_path: Path) -> None:
    server = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    relay = Relay(server.port)
    client = None
    texts = [f"line {i}" for i in range(LINES)]
    stack = ExitStack()
    try:
        watcher = stack.enter_context(wsConnect(f"ws://127.0.0.1:{server.port}/ws/v2doc", subprotocols=[Subprotocol("txchat.v1")]))
        seen: list[str] = []

        def watch(until: str) -> None:
            """What the room's other member sees, up to C{until}."""
            while until not in seen:
                for line in map(json.loads, str(watcher.recv(timeout=30)).split("\n")):
                    if line["type"] == "message":
                        seen.append(line["text"])

        client = Client(f"ws://127.0.0.1:{relay.port}/ws/v2doc", tmp_path)
        chunks = [texts[i:i + 5] for i in range(0, LINES, 5)]

        # 1. Its acks are lost (what it sent arrived): a resend must not be delivered again.
        client.type(*chunks[0])
        client.waitFor(f"Ada \\(me\\): {chunks[0][-1]}$")
        relay.swallow(toServer=False)
        client.type(*chunks[1])
        watch(chunks[1][-1])
        relay.cut()
        relay.resume()

        # 2. What it sends is lost: only a resend brings it.
        client.type(*chunks[2])
        client.waitFor(f"Ada \\(me\\): {chunks[2][-1]}$")
        relay.swallow(toServer=True)
        client.type(*chunks[3])
        relay.waitSwallowed(sum(map(sendFrameSize, chunks[3])))
        relay.cut()
        relay.resume()

        # 3. Cut while it types, wherever that falls.
        client.type(*chunks[4])
        client.waitFor(f"Ada \\(me\\): {chunks[4][-1]}$")
        client.type(*chunks[5])
        relay.cut()
        relay.resume()

        client.type(*[line for chunk in chunks[6:] for line in chunk])
        assert client.process.stdin is not None
        client.process.stdin.close()
        assert client.process.wait(timeout=60) == 0, client.log
        assert relay.accepted == 4, "the client reconnected once after each cut"

        watch(texts[-1])
        assert seen == texts, "each line once, in the order typed"
        with wsConnect(f"ws://127.0.0.1:{server.port}/ws/v2doc", subprotocols=[Subprotocol("txchat.v1")]) as reader:
            lines = [json.loads(line) for line in str(reader.recv(timeout=10)).split("\n")]
        messages = [line for line in lines if line["type"] == "message"]
        assert [m["text"] for m in messages] == texts
        assert len({m["from"] for m in messages}) == 1 and messages[0]["from"].startswith("a:")
        mine = [line for line in client.lines if line.startswith("Ada (me): ")]
        assert mine == [f"Ada (me): {text}\n" for text in texts], client.log
    finally:
        stack.close()
        if client is not None and client.process.poll() is None:
            client.process.kill()
            client.process.wait()
        relay.close()
        server.stop()
