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
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as wsConnect

from bench.processes import LISTENING, TWISTD, LoggedProcess, cleanEnvironment, twistdArgs
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
    # As documented: txchat ends by the signal it was sent, as twistd does by convention (a shell
    # shows 143), not with status 0.
    assert (status.exitCode, status.signal) == (None, signal.SIGTERM), twistd.output.decode()
    log = twistd.output.decode()
    assert re.search(r"connect 127\.0\.0\.1:\d+", log)
    assert re.search(r"disconnect 127\.0\.0\.1:\d+: code 100\d", log)


def test_ctrl_c_ends_twistd_by_sigint_after_closing_its_clients_with_1001(tmp_path: Path) -> None:
    with TwistdProcess("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as node:
        with wsConnect(f"ws://127.0.0.1:{node.port}/ws") as client:
            node.process.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert node.process.wait(30) == -signal.SIGINT, node.log  # a shell shows 130


@pytest.mark.parametrize(
    "args, option",
    [
        (["--port", "70000"], "--port"),
        (["--max-message-size", "-1"], "--max-message-size"),
        (["--listen", "tcp:nope"], "--listen"),
        (["--redis", "localhost:6379"], "--redis"),
        (["--token-public-key", "/nonexistent/key.pem"], "--token-public-key"),
        (["--token-secret", ""], "--token-secret"),
        (["--token-secret", "x"], "--token-secret"),
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


def test_two_txchats_run_side_by_side_from_one_directory_with_the_readmes_empty_pidfile(tmp_path: Path) -> None:
    # The README's run command, with another port: --pidfile= means no twistd.pid, which would
    # otherwise stop the second with "Another twistd server is running"; and each its own chat
    # log, as one txchat holds its log file.
    command = [TWISTD, "--pidfile=", "-n", "txchat", "--port", "0", "--interface", "127.0.0.1"]
    with LoggedProcess(command, tmp_path) as first, \
            LoggedProcess([*command, "--store", "sqlite:second.sqlite3"], tmp_path) as second:
        assert first.port != second.port
        for node in (first, second):
            with wsConnect(f"ws://127.0.0.1:{node.port}/ws") as client:
                client.send(f"to {node.port}")
                assert client.recv(timeout=10) == f"to {node.port}"
        assert not (tmp_path / "twistd.pid").exists()


@pytest.mark.parametrize("args, option", [
    (["--port", "70000"], "--port"),
    (["--token-secret", "x"], "--token-secret"),
])
def test_an_option_error_is_reported_even_with_a_running_servers_twistd_pid(
        tmp_path: Path, args: list[str], option: str) -> None:
    # twistd's default pid file, naming a process that is running (this one).
    (tmp_path / "twistd.pid").write_text(str(os.getpid()))
    result = subprocess.run(
        [TWISTD, "-n", "txchat", *args], cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"twistd txchat: error: {option}: "), lines
    assert "Another twistd server" not in result.stderr


def test_help_documents_every_option_with_its_default(tmp_path: Path) -> None:
    result = subprocess.run(
        [TWISTD, "txchat", "--help"], cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, default in [
        ("--port", "8080"), ("--interface", None), ("--listen", None), ("--max-message-size", "512"),
        ("--send-queue", "256"), ("--ping-interval", "54"), ("--pong-timeout", "60"),
        ("--write-timeout", "10"), ("--allowed-origin", None), ("--redis", None), ("--redis-timeout", "3.0"),
        ("--store", None), ("--retention", "0"), ("--recovery-max", "1000"),
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
        chat = node.waitFor(r"txchat: chat page at (\S+) \(WebSocket /ws\); log in txchat\.sqlite3$")
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
    # The one line is all that is printed: no log lines on stdout around it.
    assert (result.stdout + result.stderr).strip().splitlines() == [
        f"twistd txchat: error: {option} tcp:{port}:interface=127.0.0.1: Address already in use"
    ]


def test_a_unix_socket_in_a_missing_directory_stops_twistd_with_one_line_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "txchat.sock"
    result = subprocess.run(
        twistdArgs("--listen", f"unix:{path}"), cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip().splitlines() == [
        f"twistd txchat: error: --listen unix:{path}: No such file or directory ({path}.lock)"
    ]


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
    # One line, as with -n: not twistd's repr of the daemon's exception and "Please look at log file".
    assert (result.stdout + result.stderr).strip().splitlines() == [
        f"twistd txchat: error: --port tcp:{port}:interface=127.0.0.1: Address already in use"
    ]
    assert not pidfile.exists()
    # The daemon may take a moment to finish exiting after its parent has reported: wait for
    # each one that is still there to end (pidfd), then look again.
    for pid in _processesWith(str(logfile)):
        with contextlib.suppress(ProcessLookupError):
            handle = os.pidfd_open(pid)
            select.select([handle], [], [], 10)
            os.close(handle)
    assert _processesWith(str(logfile)) == [], "a daemon was left running"


def _underFileLimit(files: int) -> tuple[str, ...]:
    """A command prefix that runs the rest with soft and hard RLIMIT_NOFILE at C{files}."""
    code = ("import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({files}, {files})); os.execv(sys.argv[1], sys.argv[1:])")
    return (sys.executable, "-c", code)


def _handshake(port: int) -> tuple[int, socket.socket]:
    """Open a WebSocket on /ws with a raw socket: the HTTP status, and the socket (left open)."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = client.recv(4096)  # a reset raises; a close without an answer gives b""
        if not data:
            client.close()
            raise AssertionError(f"closed without an HTTP answer after {answer!r}")
        answer += data
    return int(answer.split(b" ", 2)[1]), client


def test_under_a_low_open_file_limit_clients_past_what_it_holds_get_503_not_emfile(tmp_path: Path) -> None:
    files = 256
    with TwistdProcess("--listen", "tcp:0:interface=127.0.0.1", "--max-connections", "1000",
                       cwd=tmp_path, prefix=_underFileLimit(files)) as node:
        said = node.waitFor(r"txchat: at most (\d+) WebSocket clients at once, not --max-connections 1000: "
                            r"the process may open (\d+) files")
        fits = int(said.group(1))
        assert (fits, int(said.group(2))) == (files - 64, files)
        held: list[socket.socket] = []
        try:
            for _ in range(fits):
                status, client = _handshake(node.port)
                held.append(client)
                assert status == 101
            # As many again past the cap: each is answered 503 (and the server closes it), where
            # without the cap the process would run out of files and drop them unanswered.
            for _ in range(files):
                status, client = _handshake(node.port)
                client.close()
                assert status == 503
        finally:
            for client in held:
                client.close()
        log = node.log
    assert "EMFILE" not in log and "file descriptor" not in log


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    code = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (128, 512)); "
            "os.execv(sys.argv[1], sys.argv[1:])")
    with TwistdProcess("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path, prefix=(sys.executable, "-c", code)) \
            as node:
        node.waitFor(r"txchat: at most 384 WebSocket clients at once, not --max-connections 10000: "
                     r"the process may open 512 files")
        limits = Path(f"/proc/{node.pid}/limits").read_text()
    assert re.search(r"Max open files\s+512\s+512\s", limits), limits


def _processesWith(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(pid))
    return found
