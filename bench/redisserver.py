"""A throwaway redis-server (Debian's package) for tests and benchmarks: no persistence, stopped by PID."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
from pathlib import Path

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        """Start on this server's port, or on the first free one found by trying: the bind
        itself decides, so there is no race with other programs."""
        candidates = [self.port] if self.port else random.sample(range(20000, 60000), 20)
        for port in candidates:
            if self._tryPort(port):
                self.port = port
                return self
        raise RuntimeError(f"redis-server would not start on any of {candidates}")

    def _tryPort(self, port: int) -> bool:
        process = subprocess.Popen(
            [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert process.stdout is not None
        output = []
        for line in process.stdout:
            output.append(line)
            if "Ready to accept connections" in line:
                self.process = process
                return True
        process.wait()
        if any("Address already in use" in line for line in output):
            return False
        raise RuntimeError("redis-server failed:\n" + "".join(output))

    def kill(self) -> None:
        """Gone at once, as in a crash: no goodbye to the clients."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: silent, as behind a partition; its connections stay open (no reset)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
