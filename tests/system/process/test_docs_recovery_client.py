"""The documented Python recovery client (docs/examples/recovery_client.py, shown in
docs/protocol.md) against the installed ``twistd txchat``, restarted under it: the client must
keep retrying while the server is away and go on printing what is said after the restart."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect as wsConnect

from bench.processes import LoggedProcess, Twistd, cleanEnvironment


CLIENT = Path(__file__).resolve().parents[3] / "docs" / "examples" / "recovery_client.py"


class Client(LoggedProcess):
    """The example client as a reader would run it; its output is its log."""

    def __init__(self, url: str, cwd: Path) -> None:
        super().__init__([sys.executable, str(CLIENT), url, "Ada"], cwd, cleanEnvironment())

    def _waitForPort(self) -> int:
        return 0


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def say(port: int, text: str) -> None:
    """Send over the plain protocol and wait for the server to deliver it (to the sender too)."""
    with wsConnect(f"ws://127.0.0.1:{port}/ws/restart") as sender:
        sender.send(text)
        assert sender.recv(timeout=10) == text


@pytest.mark.parametrize("store, missing", [
    ((), []),  # the chat log (SQLite, the default) keeps the stream: it recovers
    (("--store", "memory"), ["-- some messages may be missing\n"]),  # nothing kept: a new stream
])
def test_the_documented_client_survives_a_server_restart(tmp_path: Path, store: tuple[str, ...],
                                                         missing: list[str]) -> None:
    port = freePort()
    listen = f"tcp:{port}:interface=127.0.0.1"
    server = Twistd("--listen", listen, *store, cwd=tmp_path)
    client = None
    try:
        client = Client(f"ws://127.0.0.1:{port}/ws/restart", tmp_path)
        server.waitFor(r"connect 127\.0\.0\.1")
        say(port, "before the restart")
        client.waitFor("anonymous before the restart")

        # SIGTERM: the client gets its going-away close and finds nothing listening while the
        # server is down (stop() returns once the process has exited).
        assert server.stop() is not None
        server = Twistd("--listen", listen, *store, cwd=tmp_path)
        try:
            server.waitFor(r"connect 127\.0\.0\.1", timeout=30)  # the client is back by itself
        except RuntimeError:
            pytest.fail("the client did not come back after the restart:\n" + client.log)
        say(port, "after the restart")
        client.waitFor("anonymous after the restart")

        assert client.process.poll() is None, client.log
        assert client.lines == [
            "anonymous before the restart\n",
            *missing,
            "anonymous after the restart\n",
        ], client.log
    finally:
        if client is not None:
            client.process.kill()
            client.process.wait()
        server.stop()
