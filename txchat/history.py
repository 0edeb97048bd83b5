"""A room's kept messages: the newest N, each with its number (plain code)."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class History(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: deque[tuple[int, T]] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self._kept)

    def append(self, seq: int, item: T) -> None:
        self._kept.append((seq, item))

    def remove(self, seq: int) -> bool:
        """Take out the item numbered C{seq} (a deleted message); whether it was kept."""
        for entry in self._kept:
            if entry[0] == seq:
                self._kept.remove(entry)
                return True
        return False

    def clear(self) -> None:
        self._kept.clear()

    def lines(self) -> list[T]:
        return [item for _, item in self._kept]
