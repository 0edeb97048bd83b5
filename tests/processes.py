"""Running the installed ``twistd -n txchat`` as a user would: from another directory, with no
PYTHONPATH, so the installed plugin and page are what is exercised (``pip install .`` first)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

TWISTD = str(Path(sys.executable).parent / "twistd")
LISTENING = re.compile(r"Site(?: \(TLS\))? starting on (\d+)")


def cleanEnvironment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def twistdArgs(*options: str) -> list[str]:
    return [TWISTD, "-n", "--pidfile=", "txchat", *options]


class Twistd:
    """A blocking handle on one txchat process, for tests that do not run the reactor."""

    def __init__(self, *options: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            twistdArgs(*options), cwd=cwd, env=cleanEnvironment(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._waitForPort()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _waitForPort(self, timeout: float = 30) -> int:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.stop()
                raise RuntimeError("twistd did not start listening:\n" + self.log) from None
            if line is None:
                raise RuntimeError("twistd exited:\n" + self.log)
            match = LISTENING.search(line)
            if match:
                return int(match.group(1))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
