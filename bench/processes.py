"""Running the installed ``twistd -n txchat`` as a user would: from another directory, with no
PYTHONPATH, so the installed plugin and page are what is exercised (``pip install .`` first)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

TWISTD = str(Path(sys.executable).parent / "twistd")
# txchat's start-up line for the chat's port, and the naive baseline server's (bench/).
LISTENING = re.compile(r"(?:txchat: chat page at https?://[^ ]+:|listening on )(\d+)")


def cleanEnvironment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def twistdArgs(*options: str) -> list[str]:
    return [TWISTD, "-n", "--pidfile=", "txchat", *options]


class LoggedProcess:
    """A blocking handle on a server process that says in its log which port it took."""

    def __init__(
        self, command: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: int | None = None,
    ) -> None:
        """
        @param stdin: C{subprocess.PIPE} to write to the process (its C{process.stdin}).
        """
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env if env is not None else cleanEnvironment(), stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._ended = False
        self._news = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._waitForPort()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._news:
                self.lines.append(line)
                self._news.notify_all()
        with self._news:
            self._ended = True
            self._news.notify_all()

    def _waitForPort(self) -> int:
        try:
            return int(self.waitFor(LISTENING).group(1))
        except RuntimeError:
            self.stop()
            raise

    def waitFor(self, pattern: re.Pattern[str] | str, since: int = 0, timeout: float = 30) -> re.Match[str]:
        """The first log line from line C{since} on that matches, waiting for it if need be
        (the thread that reads the log wakes us at each new line)."""
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        checked = since
        with self._news:
            while True:
                for line in self.lines[checked:]:
                    match = pattern.search(line)
                    if match:
                        return match
                checked = len(self.lines)
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    raise RuntimeError(f"the process never logged {pattern.pattern!r}:\n" + self.log)
                self._news.wait(left)

    def linesDuring(self, seconds: float, since: int = 0) -> list[str]:
        """Everything logged from line C{since} on by the time C{seconds} have passed (or the
        process ended): a wait on the log, woken by each new line, not a sleep."""
        deadline = time.monotonic() + seconds
        with self._news:
            while not self._ended and (left := deadline - time.monotonic()) > 0:
                self._news.wait(left)
            return self.lines[since:]

    @property
    def log(self) -> str:
        with self._news:
            return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Twistd(LoggedProcess):
    """The installed ``twistd -n txchat`` with these options; C{prefix} runs it under another
    command (``taskset -c 0``)."""

    def __init__(self, *options: str, cwd: Path, prefix: tuple[str, ...] = ()) -> None:
        super().__init__([*prefix, *twistdArgs(*options)], cwd)
