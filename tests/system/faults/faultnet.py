"""Real networks to break: Linux network namespaces joined by veth pairs, with faults made by
the kernel's traffic control (``ip`` and ``tc`` from iproute2; root needed).

Every namespace, link and process is the harness's own: names start with a prefix unique to
the run, addresses come from the documentation ranges 198.51.100.0/24 and 203.0.113.0/24
(RFC 5737), which exist only inside these namespaces, and L{Network.close} removes it all.

Faults on a link (both directions):
- partition: every packet dropped (``netem loss 100%``; where the kernel has no netem, a
  token bucket whose burst no packet fits in, which drops every packet just the same);
- degrade: delay with jitter and random loss (``netem``); where the kernel has no netem, a
  congested link instead: a slow token bucket with a short queue, so packets wait and the
  ones that overflow it are dropped.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def unavailable() -> str | None:
    """Why namespaces and links cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists(IP) or not os.path.exists(TC):
        return "iproute2 (ip, tc) is not installed"
    probe = f"txfprobe{os.getpid()}"
    try:
        _run(IP, "netns", "add", probe)
        _run(IP, "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        _run(IP, "netns", "exec", probe, TC, "qdisc", "add", "dev", "p0", "root", "tbf", "rate", "1mbit",
             "burst", "10kb", "latency", "50ms")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return f"cannot make network namespaces and links here: {e}"
    finally:
        _run(IP, "netns", "del", probe, check=False)
    return None


def hasNetem() -> bool:
    probe = f"txfnetem{os.getpid()}"
    try:
        _run(IP, "netns", "add", probe)
        _run(IP, "netns", "exec", probe, IP, "link", "set", "lo", "up")
        return _run(IP, "netns", "exec", probe, TC, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                    check=False).returncode == 0
    finally:
        _run(IP, "netns", "del", probe, check=False)


@dataclass
class Link:
    """A veth pair between two namespaces, each end with its own address."""

    ends: tuple[tuple[str, str, str], tuple[str, str, str]]  # (namespace, interface, address) each
    netem: bool
    state: str = "up"

    def address(self, namespace: str) -> str:
        """The address of this link's end in C{namespace}."""
        return next(address for ns, _, address in self.ends if ns == namespace)

    def _qdisc(self, *spec: str) -> None:
        for namespace, interface, _ in self.ends:
            _run(IP, "netns", "exec", namespace, TC, "qdisc", "del", "dev", interface, "root", check=False)
            if spec:
                _run(IP, "netns", "exec", namespace, TC, "qdisc", "add", "dev", interface, "root", *spec)

    def partition(self) -> None:
        if self.netem:
            self._qdisc("netem", "loss", "100%")
        else:
            self._qdisc("tbf", "rate", "8kbit", "burst", "64", "limit", "64")
        self.state = "partitioned"

    def degrade(self, delay: int = 200, jitter: int = 50, loss: float = 5.0) -> str:
        """Delay (ms) with jitter, and loss (%); says what it did."""
        if self.netem:
            self._qdisc("netem", "delay", f"{delay}ms", f"{jitter}ms", "loss", f"{loss}%")
            what = f"netem delay {delay}±{jitter} ms, loss {loss}%"
        else:
            self._qdisc("tbf", "rate", "24kbit", "burst", "2kb", "latency", f"{delay}ms")
            what = f"congested: tbf 24 kbit/s, a queue of {delay} ms, tail drops"
        self.state = "degraded"
        return what

    def heal(self) -> None:
        self._qdisc()
        self.state = "up"


@dataclass
class Network:
    prefix: str = field(default_factory=lambda: f"txf{os.getpid() % 100000}")
    namespaces: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    netem: bool = field(default_factory=hasNetem)
    _count: Any = field(default_factory=itertools.count)

    def namespace(self, name: str) -> str:
        namespace = f"{self.prefix}-{name}"
        _run(IP, "netns", "add", namespace)
        self.namespaces.append(namespace)
        _run(IP, "netns", "exec", namespace, IP, "link", "set", "lo", "up")
        return namespace

    def link(self, a: str, b: str) -> Link:
        """A point-to-point link between namespaces C{a} and C{b}: a /30 of its own."""
        n = next(self._count)
        if n >= 128:
            raise RuntimeError("at most 128 links")
        base = ("198.51.100", 4 * n) if n < 64 else ("203.0.113", 4 * (n - 64))
        ends = []
        for i, namespace in enumerate((a, b)):
            ends.append((namespace, f"{self.prefix[-6:]}l{n}{'ab'[i]}", f"{base[0]}.{base[1] + 1 + i}"))
        (nsA, ifA, _), (nsB, ifB, _) = ends
        _run(IP, "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB)
        for namespace, interface, address in ends:
            _run(IP, "-n", namespace, "addr", "add", f"{address}/30", "dev", interface)
            _run(IP, "-n", namespace, "link", "set", interface, "up")
        link = Link((ends[0], ends[1]), self.netem)
        self.links.append(link)
        return link

    def command(self, namespace: str, *argv: str) -> list[str]:
        """C{argv} to run inside C{namespace} (``ip netns exec`` execs it: the PID is its own)."""
        return [IP, "netns", "exec", namespace, *argv]

    def start(self, namespace: str, *argv: str, **popen: Any) -> subprocess.Popen[Any]:
        process = subprocess.Popen(self.command(namespace, *argv), **popen)
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Kill what the run started (by PID), then delete its namespaces (and so their links)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
        for namespace in self.namespaces:
            _run(IP, "netns", "del", namespace, check=False)
        self.namespaces.clear()
        self.links.clear()
