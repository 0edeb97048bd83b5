"""Watching processes that daemonised (so are not our children) by their pid."""

from __future__ import annotations

import os
import select
from pathlib import Path


def waitGone(pid: int, timeout: float = 10) -> None:
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([handle], [], [], timeout)
    finally:
        os.close(handle)


def running(pid: int) -> bool:
    """Alive and not a zombie (an ended daemon waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
