"""The documented JavaScript txchat.v2 client (docs/examples/v2_client.js, shown in
docs/protocol.md) in headless Chromium, through a relay that loses its acks, loses its sends
and cuts it: every message arrives exactly once, in the order said."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from bench.processes import Twistd
from tests.support.browser import Browsers
from tests.support.relay import Relay

CLIENT = (Path(__file__).resolve().parents[3] / "docs" / "examples" / "v2_client.js").read_text()

START = CLIENT + """
window.seen = [];
window.chat = txchatV2(arguments[0], {name: "Ada", onMessage: (line, mine) => window.seen.push([line.text, mine])});
"""

# Resolves once every message said is acknowledged and the last one has come back.
SETTLED = """
const [text, done] = [arguments[0], arguments[arguments.length - 1]];
const check = () => chat.unacked.size === 0 && seen.some(([t]) => t === text) ? done(true) : setTimeout(check, 20);
check();
"""


def frameSize(text: str) -> int:
    """The bytes of the page's frame for a send of C{text} (a UUID for ID; masked, under 126)."""
    return 6 + len(json.dumps({"type": "send", "id": "0" * 36, "text": text}, separators=(",", ":")))


def test_the_documented_js_client_delivers_every_message_once_across_cuts(
    chat: Twistd, browsers: Browsers,
) -> None:
    relay = Relay(chat.port)
    driver = browsers[0]
    texts = [f"line {i}" for i in range(30)]
    chunks = [texts[i:i + 5] for i in range(0, 30, 5)]
    try:
        with wsConnect(f"ws://127.0.0.1:{chat.port}/ws/jsv2", subprotocols=[Subprotocol("txchat.v1")]) as watcher:
            seen: list[str] = []

            def watch(until: str) -> None:
                while until not in seen:
                    for line in map(json.loads, cast(str, watcher.recv(timeout=20)).split("\n")):
                        if line["type"] == "message":
                            seen.append(line["text"])

            def say(*lines: str) -> None:
                driver.execute_script("for (const text of arguments[0]) chat.say(text)", list(lines))

            driver.get(f"http://127.0.0.1:{relay.port}/healthz")  # same origin as the WebSocket
            driver.execute_script(START, f"ws://127.0.0.1:{relay.port}/ws/jsv2")
            say(*chunks[0])
            driver.execute_async_script(SETTLED, chunks[0][-1])

            relay.swallow(toServer=False)  # its acks are lost: the resends must not be delivered again
            say(*chunks[1])
            watch(chunks[1][-1])
            relay.cut()
            relay.resume()
            driver.execute_async_script(SETTLED, chunks[1][-1])

            say(*chunks[2])
            driver.execute_async_script(SETTLED, chunks[2][-1])
            relay.swallow(toServer=True)  # what it sends is lost: only a resend brings it
            say(*chunks[3])
            relay.waitSwallowed(sum(map(frameSize, chunks[3])))
            relay.cut()
            relay.resume()

            say(*chunks[4])
            relay.cut()  # wherever that falls
            relay.resume()
            say(*chunks[5])
            driver.execute_async_script(SETTLED, texts[-1])
            watch(texts[-1])
            assert seen == texts, "each message once, in the order said"
            mine: list[Any] = driver.execute_script("return seen")
            assert mine == [[text, True] for text in texts]
    finally:
        relay.close()
