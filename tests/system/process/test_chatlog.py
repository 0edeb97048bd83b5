"""The chat log of one process (SPEC §16) with the installed ``twistd txchat``: SIGKILLed in the
middle of the traffic and started again, it goes on with the same epoch and numbers, a v1
client that resumes recovers exactly what it missed, and a join's history spans the restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.request import urlopen

import pytest

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.processes import Twistd


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class V1:
    """A txchat.v1 client that reads welcome and message lines (presence lines come and go as
    they will), however they are framed."""

    def __init__(self, port: int, since: str | None = None) -> None:
        query = f"?since={since}" if since else ""
        self.socket: ClientConnection = connect(f"ws://127.0.0.1:{port}/ws/log{query}",
                                                subprotocols=[Subprotocol("txchat.v1")])
        self.unread: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        self.socket.send(text)

    def recv(self) -> list[dict[str, Any]]:
        frame = self.socket.recv(timeout=10)
        assert isinstance(frame, str)
        return [line for line in map(json.loads, frame.split("\n")) if line["type"] in ("welcome", "message")]

    def close(self) -> None:
        self.socket.close()


def v1(port: int, since: str | None = None) -> V1:
    return V1(port, since)


def lines(client: V1, count: int) -> list[dict[str, Any]]:
    """The next C{count} lines."""
    while len(client.unread) < count:
        client.unread.extend(client.recv())
    got, client.unread = client.unread[:count], client.unread[count:]
    return got


def test_sigkill_mid_traffic_loses_nothing_seen_and_a_resuming_client_recovers_exactly(tmp_path: Path) -> None:
    port = freePort()
    options = ("--listen", f"tcp:{port}:interface=127.0.0.1", "--store", f"sqlite:{tmp_path / 'chat.sqlite3'}")
    server = Twistd(*options, cwd=tmp_path)
    try:
        reader = v1(port)
        (welcome,) = lines(reader, 1)
        epoch = welcome["epoch"]
        sender = v1(port)
        lines(sender, 1)
        for i in range(10):
            sender.send(f"before {i}")
        seen = lines(reader, 10)
        reader.close()  # it has seen 1..10
        assert [m["seq"] for m in seen] == list(range(1, 11))

        # The sender goes on, and the server is killed while messages are on their way: every
        # message any client saw must be in the log; what nobody saw may be lost.
        echoed: list[dict[str, Any]] = []
        done = threading.Event()

        def read() -> None:
            try:
                while True:
                    echoed.extend(sender.recv())
            except (ConnectionClosed, TimeoutError, OSError):
                done.set()

        threading.Thread(target=read, daemon=True).start()
        for i in range(10, 200):
            sender.send(f"during {i}")
        while len(echoed) < 20:  # some of them are out: kill it with the rest on their way
            time.sleep(0.001)
        server.process.kill()
        server.process.wait()
        assert done.wait(15)
        sawLast = max(m["seq"] for m in echoed if m["type"] == "message")
        assert sawLast > 11, "the kill came mid-traffic"

        server = Twistd(*options, cwd=tmp_path)
        resumed = v1(port, f"{epoch}:10")
        (again,) = lines(resumed, 1)
        assert again["type"] == "welcome" and again["recovered"] is True and again["epoch"] == epoch
        assert again["seq"] >= sawLast, "every message a client saw is in the log"
        missed = lines(resumed, again["seq"] - 10)
        assert [m["seq"] for m in missed] == list(range(11, again["seq"] + 1))
        byNumber = {m["seq"]: m["text"] for m in echoed if m["type"] == "message"}
        assert all(byNumber[m["seq"]] == m["text"] for m in missed if m["seq"] in byNumber)
        resumed.send("after the restart")
        (after,) = lines(resumed, 1)
        assert (after["seq"], after["text"]) == (again["seq"] + 1, "after the restart")

        joiner = v1(port)
        kept = min(50, after["seq"])  # --history's default
        joined = lines(joiner, 1 + kept)
        assert joined[0]["epoch"] == epoch and joined[0].get("recovered") is None
        assert [m["seq"] for m in joined[1:]] == list(range(after["seq"] - kept + 1, after["seq"] + 1))
        for client in (resumed, joiner):
            client.close()
    finally:
        server.stop()


def test_a_clean_restart_goes_on_too_and_the_default_store_is_in_the_working_directory(tmp_path: Path) -> None:
    port = freePort()
    listen = ("--listen", f"tcp:{port}:interface=127.0.0.1")
    with Twistd(*listen, cwd=tmp_path) as server:
        server.waitFor("txchat.sqlite3")
        client = v1(port)
        (welcome,) = lines(client, 1)
        client.send("kept")
        lines(client, 1)
        client.close()
    assert (tmp_path / "txchat.sqlite3").exists()
    with Twistd(*listen, cwd=tmp_path):
        client = v1(port, f"{welcome['epoch']}:0")
        back = lines(client, 2)
        assert back[0]["recovered"] is True and back[0]["epoch"] == welcome["epoch"]
        assert (back[1]["seq"], back[1]["text"]) == (1, "kept")
        client.close()


@pytest.fixture
def smallDisk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system of its own (tmpfs; root only), to fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_full_disk_is_logged_once_the_chat_goes_on_unnumbered_and_numbering_resumes(
        tmp_path: Path, smallDisk: Path) -> None:
    port = freePort()
    with Twistd("--listen", f"tcp:{port}:interface=127.0.0.1", "--store", f"sqlite:{smallDisk / 'chat.sqlite3'}",
                "--metrics-listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        client, other = v1(port), v1(port)
        lines(client, 1)
        lines(other, 1)
        client.send("kept")
        assert [(m["seq"], m["text"]) for m in lines(other, 1)] == [(1, "kept")]
        filler = smallDisk / "filler"
        with open(filler, "wb") as f:  # every block the file system has left
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        for i in range(5):
            client.send(("x" * 400) + f" {i}")  # more than the pages SQLite may still have free
        got = lines(other, 5)
        assert [m.get("seq") for m in got] == [None] * 5, "delivered, unnumbered: nobody sees a number twice"
        server.waitFor("the chat log cannot be written")
        filler.unlink()
        client.send("after")
        (after,) = lines(other, 1)
        assert (after["seq"], after["text"]) == (2, "after"), "no number given twice or skipped"
        assert len([line for line in server.lines if "the chat log cannot be written" in line]) == 1
        assert server.process.poll() is None
        metricsPort = server.waitFor(r"metrics at http://[^ ]+:(\d+)/metrics").group(1)
        with urlopen(f"http://127.0.0.1:{metricsPort}/metrics", timeout=10) as response:
            assert "txchat_log_unwritten 5.0" in response.read().decode()
        client.close()
        other.close()
