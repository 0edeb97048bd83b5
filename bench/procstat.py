"""CPU and memory of a process, read from /proc (Linux)."""

from __future__ import annotations

import os
import time

_TICKS = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def waitSeconds(pid: int) -> float:
    """Time the process's threads have spent runnable but waiting for a CPU (the scheduler's
    run queue): on a shared machine, what others took from it."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def rssMiB(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 2)
    return 0.0


class ProcessSample:
    """CPU use of one process over a window, as a percentage of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = 0.0
        self._wall = 0.0

    def start(self) -> None:
        self._cpu = cpuSeconds(self.pid)
        self._wall = time.perf_counter()

    def cpuPercent(self) -> float:
        wall = time.perf_counter() - self._wall
        return round(100 * (cpuSeconds(self.pid) - self._cpu) / wall, 1) if wall > 0 else 0.0
