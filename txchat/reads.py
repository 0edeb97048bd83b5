"""Read positions (SPEC §18): how far each stable identity has read in each room.

Kept in the chat log when there is one (L{txchat.chatlog.ChatLog.setRead}), so they are as
durable as the messages; else here, in memory, as a cache a cluster fills from Redis. A
position never moves backwards within an epoch; one in another epoch (the room started over)
replaces it.
"""

from __future__ import annotations

from twisted.logger import Logger

from txchat.chatlog import ChatLog, Head, LogError

_log = Logger()


def later(stored: Head | None, position: Head) -> Head:
    """The position to keep: the new one, unless the stored one is ahead of it in its epoch."""
    if stored is not None and stored.epoch == position.epoch and stored.seq >= position.seq:
        return stored
    return position


class ReadPositions:
    def __init__(self, log: ChatLog | None = None) -> None:
        self._log = log
        self._known: dict[tuple[str, str], Head] = {}  # (identity, room) -> position

    def get(self, identity: str, room: str) -> Head | None:
        known = self._known.get((identity, room))
        if known is not None or self._log is None:
            return known
        try:
            stored = self._log.read(identity, room)
        except LogError:
            return None
        if stored is not None:
            self._known[(identity, room)] = stored
        return stored

    def set(self, identity: str, room: str, position: Head) -> Head:
        """Keep the position unless behind the stored one; the position now kept."""
        kept = later(self.get(identity, room), position)
        if self._log is not None:
            try:
                kept = self._log.setRead(identity, room, kept)
            except LogError as e:
                _log.warn("a read position could not be written to the chat log: {error}", error=str(e))
        self._known[(identity, room)] = kept
        return kept

    def heard(self, identity: str, room: str, position: Head) -> Head:
        """A position kept elsewhere (another process, Redis): known here from now on."""
        kept = self._known[(identity, room)] = later(self._known.get((identity, room)), position)
        return kept

    def known(self, identity: str, room: str) -> bool:
        return (identity, room) in self._known

    def drop(self, identity: str, room: str) -> None:
        """Nobody of that identity is in the room here any more: a cluster's cache may let it go."""
        self._known.pop((identity, room), None)
