"""Ports for programs that must be told theirs (a shell script, nginx), not given port 0."""

from __future__ import annotations

import random
import socket


def freePorts(count: int) -> list[int]:
    """Ports nothing listens on now, below the ephemeral range (so no outgoing connection of
    another test takes one meanwhile), each checked by binding it."""
    ports: list[int] = []
    for port in random.sample(range(20000, 32768), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free ports")
