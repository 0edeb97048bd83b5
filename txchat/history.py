"""A room's kept messages: the newest N, as v1 lines with their numbers (plain code)."""

from __future__ import annotations

from collections import deque


class History:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: deque[tuple[int, bytes]] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self._kept)

    def append(self, seq: int, line: bytes) -> None:
        self._kept.append((seq, line))

    def clear(self) -> None:
        self._kept.clear()

    def lines(self) -> list[bytes]:
        return [line for _, line in self._kept]

    def after(self, seq: int, last: int) -> list[bytes] | None:
        """Every kept line numbered after C{seq}, when that is every message after it up to
        C{last} (the room's newest number); None when some of them are gone (or never were)."""
        if seq > last:
            return None
        if seq == last:
            return []
        if not self._kept or self._kept[0][0] > seq + 1:
            return None
        return self.newerThan(seq)

    def newerThan(self, seq: int) -> list[bytes]:
        """Every kept line numbered after C{seq}, whatever is gone before them."""
        return [line for number, line in self._kept if number > seq]
