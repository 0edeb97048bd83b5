"""The installed ``twistd -n txchat`` and its chat log (--store): where it is, and the one
line that stops start-up when it cannot be had (``pip install .`` first)."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from websockets.sync.client import connect as wsConnect

from bench.processes import LISTENING, TWISTD, Twistd, cleanEnvironment, twistdArgs


def run(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    result = subprocess.run(
        twistdArgs("--listen", "tcp:0:interface=127.0.0.1", *args),
        cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60,
    )
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()


def chat(port: int) -> None:
    with wsConnect(f"ws://127.0.0.1:{port}/ws") as client:
        client.send("hello")
        assert client.recv(timeout=10) == "hello"


def test_with_no_store_option_the_log_is_txchat_sqlite3_in_the_working_directory(tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as node:
        node.waitFor(r"txchat: chat page at \S+ \(WebSocket /ws\); log in txchat\.sqlite3$")
        assert (tmp_path / "txchat.sqlite3").exists()
        chat(node.port)  # the reactor runs: SIGTERM is twistd's to handle, not the default action
    # SIGTERM closed it cleanly: the next start goes on whatever the machine did meanwhile.
    db = sqlite3.connect(tmp_path / "txchat.sqlite3")
    assert db.execute("SELECT clean FROM run").fetchone() == (1,)
    db.close()


def test_with_redis_and_no_store_the_start_up_line_says_the_log_is_not_kept(tmp_path: Path) -> None:
    # Nothing listens on port 1: the chat starts anyway, with Redis away.
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", "redis://127.0.0.1:1", cwd=tmp_path) as node:
        node.waitFor(r"txchat: chat page at \S+ \(WebSocket /ws\); the chat log is not kept \(--store\)$")
    assert not (tmp_path / "txchat.sqlite3").exists()


def test_a_store_that_is_not_sqlite_stops_start_up_with_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "not-a-db"
    notes.write_text("my notes\n" * 100)
    code, lines = run(tmp_path, "--store", f"sqlite:{notes}")
    assert code != 0
    assert lines == [f"twistd txchat: error: --store: {notes}: not a SQLite database"]
    assert notes.read_text() == "my notes\n" * 100


def test_a_malformed_store_url_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    code, lines = run(tmp_path, "--store", "mysql://db")
    assert code != 0 and len(lines) == 1 and lines[0].startswith("twistd txchat: error: --store: "), lines


def test_a_second_txchat_on_the_same_store_stops_with_one_line_and_the_first_goes_on(tmp_path: Path) -> None:
    store = tmp_path / "chat.sqlite3"
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--store", f"sqlite:{store}", cwd=tmp_path) as first:
        code, lines = run(tmp_path, "--store", f"sqlite:{store}")
        assert code != 0
        assert lines == [f"twistd txchat: error: --store: {store} is in use by another running txchat "
                         f"(it holds {store}.lock)"]
        assert first.process.poll() is None
        with wsConnect(f"ws://127.0.0.1:{first.port}/ws") as client:
            client.send("still here")
            assert client.recv(timeout=10) == "still here"
    # Stopped cleanly, it lets go: the next one starts.
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--store", f"sqlite:{store}", cwd=tmp_path):
        pass


def test_a_daemonised_txchat_keeps_its_store_after_the_fork(tmp_path: Path) -> None:
    # The store is taken in makeService, before twistd forks: the lock must go with the child.
    store, pidfile, logfile = tmp_path / "chat.sqlite3", tmp_path / "txchat.pid", tmp_path / "txchat.log"
    result = subprocess.run(
        [TWISTD, f"--pidfile={pidfile}", f"--logfile={logfile}", "txchat", "--listen", "tcp:0:interface=127.0.0.1",
         "--store", f"sqlite:{store}"],
        cwd=tmp_path, env=cleanEnvironment(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    daemon = int(pidfile.read_text())
    try:
        # The daemon logs its port once its reactor starts (after its parent has returned);
        # no process to read a pipe from, so its log file is looked at until then.
        deadline = time.monotonic() + 30
        while (match := LISTENING.search(logfile.read_text())) is None:
            assert time.monotonic() < deadline, logfile.read_text()
            select.select([], [], [], 0.05)
        chat(int(match.group(1)))
        code, lines = run(tmp_path, "--store", f"sqlite:{store}")
        assert code != 0 and lines == [f"twistd txchat: error: --store: {store} is in use by another running txchat "
                                       f"(it holds {store}.lock)"]
    finally:
        os.kill(daemon, signal.SIGTERM)
        handle = os.pidfd_open(daemon)
        select.select([handle], [], [], 30)
        os.close(handle)
    db = sqlite3.connect(store)
    assert db.execute("SELECT clean FROM run").fetchone() == (1,), logfile.read_text()
    db.close()
