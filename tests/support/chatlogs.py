"""The chat log's stores for tests: a fresh one of each kind, and messages to write."""

from __future__ import annotations

from pathlib import Path

from txchat.chatlog import ChatLog, Head
from txchat.memorylog import MemoryLog
from txchat.sqlitelog import SqliteLog
from txchat.stream import Delivery

KINDS = ("memory", "sqlite")


def makeLog(kind: str, directory: Path, boot: str = "boot-1") -> ChatLog:
    if kind == "memory":
        return MemoryLog()
    return SqliteLog(str(directory / "log.sqlite3"), bootId=lambda: boot)


def message(
    room: str, epoch: str | None, seq: int | None, time: int = 1000, text: str | None = None,
    sender: str = "a:me", ref: str | None = None, name: str = "Ada",
) -> Delivery:
    return Delivery(room, (text if text is not None else f"{room} {epoch} {seq}").encode("utf-8"), name, time, seq,
                    epoch, sender, ref)


def key(m: Delivery) -> tuple[object, ...]:
    """Everything a store keeps of a message."""
    return (m.room, m.epoch, m.seq, m.time, m.name, m.text, m.sender, m.ref)


def keys(messages: list[Delivery] | None) -> list[tuple[object, ...]] | None:
    return None if messages is None else [key(m) for m in messages]


def walk(log: ChatLog, room: str, limit: int) -> list[Delivery]:
    """Every message of the room, paging back from the newest: oldest first."""
    pages: list[list[Delivery]] = []
    page = log.page(room, None, limit)
    while True:
        pages.append(page.messages)
        if not page.more:
            break
        first = page.messages[0]
        assert first.epoch is not None and first.seq is not None
        page = log.page(room, Head(first.epoch, first.seq), limit)
    return [m for p in reversed(pages) for m in p]
