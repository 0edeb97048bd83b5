"""The installed program: ``twistd -n txchat`` as a user runs it, from another directory.

These need ``pip install .`` first (the README's test command does it): they prove that the
installed plugin and page are found, not the source checkout's.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from websockets.sync.client import connect as wsConnect

from bench.processes import LISTENING, TWISTD, cleanEnvironment, twistdArgs
from bench.processes import Twistd as TwistdProcess
from tests.support.live import connect, within


class Twistd(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[BaseException | None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        match = LISTENING.search(self.output.decode(errors="replace"))
        if match and not self.listening.called:
            self.listening.callback(int(match.group(1)))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode()))
        self.ended.callback(reason.value)


class Running:
    """Just enough of tests.live.Server for connect()."""

    def __init__(self, port: int) -> None:
        self.number = port


@pytest_twisted.ensureDeferred
async def test_twistd_serves_chat_and_closes_clients_with_1001_on_sigterm(tmp_path: Path) -> None:
    twistd = Twistd()
    process = reactor.spawnProcess(
        twistd,
        TWISTD,
        twistdArgs("--listen", "tcp:0:interface=127.0.0.1"),
        env=cleanEnvironment(),
        path=str(tmp_path),
    )
    try:
        port = await within(twistd.listening, 30)
        server = Running(port)
        a = await connect(server)
        b = await connect(server, origin=f"http://127.0.0.1:{port}")
        a.say("through the real process")
        assert await b.receive(1) == ["through the real process"]
        assert await a.receive(1) == ["through the real process"]
        process.signalProcess("TERM")
        assert [(await within(c.closed))[0] for c in (a, b)] == [1001, 1001]
        status = await within(twistd.ended, 30)
    finally:
        if process.pid is not None:
            process.signalProcess("KILL")
    assert status.exitCode == 0 or status.signal == signal.SIGTERM, twistd.output.decode()
    log = twistd.output.decode()
    assert re.search(r"connect 127\.0\.0\.1:\d+", log)
    assert re.search(r"disconnect 127\.0\.0\.1:\d+: code 100\d", log)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--port", "70000"], "--port"),
        (["--max-message-size", "-1"], "--max-message-size"),
        (["--listen", "tcp:nope"], "--listen"),
        (["--redis", "localhost:6379"], "--redis"),
        (["--token-public-key", "/nonexistent/key.pem"], "--token-public-key"),
        (["--token-secret", ""], "--token-secret"),
        (["--api-key", "short"], "--api-key"),
        (["--api-key-file", "/dev/null"], "--api-key-file"),
    ],
)
def test_bad_option_exits_with_one_line_and_listens_on_nothing(tmp_path: Path, args: list[str], option: str) -> None:
    result = subprocess.run(
        twistdArgs(*args),
        cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert option in lines[0]
    assert "starting on" not in result.stdout


def test_help_documents_every_option_with_its_default(tmp_path: Path) -> None:
    result = subprocess.run(
        [TWISTD, "txchat", "--help"], cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, default in [
        ("--port", "8080"), ("--interface", None), ("--listen", None), ("--max-message-size", "512"),
        ("--send-queue", "256"), ("--ping-interval", "54"), ("--pong-timeout", "60"),
        ("--write-timeout", "10"), ("--allowed-origin", None), ("--redis", None),
    ]:
        assert option in text
        if default:
            assert re.search(re.escape(option) + r"=.*?\[default: " + default, text), option


def test_installed_plugin_and_page_are_found_from_elsewhere(tmp_path: Path) -> None:
    code = (
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "import txchat, os\n"
        "from txchat.webapp import pagePath\n"
        "print([p.tapname for p in getPlugins(IServiceMaker)].count('txchat'))\n"
        "print(os.path.dirname(txchat.__file__))\n"
        "print(open(pagePath()).read()[:15])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    count, where, page = result.stdout.splitlines()
    assert count == "1"
    assert "site-packages" in where, "txchat is not installed: run pip install . first"
    assert page == "<!DOCTYPE html>"


def test_start_up_says_where_to_open_the_chat_and_the_metrics_and_nothing_about_factories(tmp_path: Path) -> None:
    with TwistdProcess("--listen", "tcp:0:interface=127.0.0.1", "--metrics-listen", "tcp:0:interface=127.0.0.1",
                cwd=tmp_path) as node:
        metrics = node.waitFor(r"txchat: metrics at http://127\.0\.0\.1:(\d+)/metrics$")
        assert int(metrics.group(1)) != node.port
        chat = node.waitFor(r"txchat: chat page at (\S+) \(WebSocket /ws\)$")
        assert chat.group(1) == f"http://127.0.0.1:{node.port}/"
        with wsConnect(f"ws://127.0.0.1:{node.port}/ws") as client:
            client.send("hello")
            assert client.recv(timeout=10) == "hello"
        node.waitFor(r"disconnect 127\.0\.0\.1")
    log = node.log
    assert "Starting factory" not in log and "Stopping factory" not in log
    assert " at 0x" not in log, "an object's repr in the log"


def busySocket() -> socket.socket:
    """A port that is taken: bound and listening on 127.0.0.1."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken


@pytest.mark.parametrize("option", ["--port", "--listen", "--metrics-listen"])
def test_a_busy_port_stops_twistd_with_one_line_naming_the_endpoint(tmp_path: Path, option: str) -> None:
    with busySocket() as taken:
        port = taken.getsockname()[1]
        args = {
            "--port": ["--port", str(port), "--interface", "127.0.0.1"],
            "--listen": ["--listen", f"tcp:{port}:interface=127.0.0.1"],
            "--metrics-listen": ["--listen", "tcp:0:interface=127.0.0.1",
                                 "--metrics-listen", f"tcp:{port}:interface=127.0.0.1"],
        }[option]
        result = subprocess.run(
            twistdArgs(*args), cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"twistd txchat: error: {option} tcp:{port}") and "Address already in use" in line


def test_a_daemonised_twistd_on_a_busy_port_exits_non_zero_and_leaves_nothing_running(tmp_path: Path) -> None:
    logfile, pidfile = tmp_path / "txchat.log", tmp_path / "txchat.pid"
    with busySocket() as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [TWISTD, f"--pidfile={pidfile}", f"--logfile={logfile}", "txchat", "--port", str(port),
             "--interface", "127.0.0.1"],
            cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert f"tcp:{port}" in result.stderr and "Address already in use" in result.stderr
    assert not pidfile.exists()
    # The daemon may take a moment to finish exiting after its parent has reported: wait for
    # each one that is still there to end (pidfd), then look again.
    for pid in _processesWith(str(logfile)):
        with contextlib.suppress(ProcessLookupError):
            handle = os.pidfd_open(pid)
            select.select([handle], [], [], 10)
            os.close(handle)
    assert _processesWith(str(logfile)) == [], "a daemon was left running"


def _processesWith(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(pid))
    return found
