"""A room's kept messages: the newest N, each with its number (plain code)."""

from __future__ import annotations

from collections import deque
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class History(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: deque[tuple[int, T]] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self._kept)

    def __iter__(self) -> Iterator[T]:
        return (item for _, item in self._kept)

    def append(self, seq: int, item: T) -> None:
        self._kept.append((seq, item))

    def clear(self) -> None:
        self._kept.clear()

    def lines(self) -> list[T]:
        return [item for _, item in self._kept]

    def after(self, seq: int, last: int) -> list[T] | None:
        """Every kept item numbered after C{seq}, when that is every message after it up to
        C{last} (the room's newest number); None when some of them are gone (or never were)."""
        if seq > last:
            return None
        if seq == last:
            return []
        if not self._kept or self._kept[0][0] > seq + 1:
            return None
        return self.newerThan(seq)

    def newerThan(self, seq: int) -> list[T]:
        """Every kept item numbered after C{seq}, whatever is gone before them."""
        return [item for number, item in self._kept if number > seq]
