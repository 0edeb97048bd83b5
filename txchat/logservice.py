"""The chat log's owner for the life of the process: retention, and a clean close.

The services that write to the log (the hub, whose stop flushes what it holds) are this
service's children, so the log closes only once they have stopped: a plain sibling would be
stopped at the same time as the hub (a MultiService does not wait for one child before the
next), and the hub's last writes would find the log closed.
"""

from __future__ import annotations

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txchat.chatlog import Archive, ChatLog, LogError

__all__ = ["ArchiveRetention", "LogService", "PRUNE_INTERVAL"]

_log = Logger()

PRUNE_INTERVAL = 60.0  # seconds between prunes: retention is counted in days
_DAY_MS = 86_400_000


class LogService(MultiService):
    def __init__(self, log: ChatLog, clock: IReactorTime, retention: float, interval: float = PRUNE_INTERVAL) -> None:
        """
        @param retention: days a message is kept (0: forever, no pruning).
        """
        super().__init__()
        self.log = log
        self.clock = clock
        self.retention = retention
        self.interval = interval
        self._loop: LoopingCall | None = None
        self._failing = False  # said once until a prune works again

    def startService(self) -> None:
        super().startService()
        if self.retention > 0:
            self._loop = LoopingCall(self.prune)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=True)

    def prune(self) -> int:
        """Delete what is older than the retention; how many (0 when the log failed)."""
        olderThan = int(self.clock.seconds() * 1000 - self.retention * _DAY_MS)
        try:
            pruned = self.log.prune(olderThan)
        except LogError as e:
            if not self._failing:
                self._failing = True
                _log.warn("txchat: could not prune the chat log: {error}", error=str(e))
            return 0
        if self._failing:
            self._failing = False
            _log.info("txchat: the chat log is pruned again")
        if pruned:
            _log.debug("txchat: pruned {count} messages older than the retention", count=pruned)
        return pruned

    def stopService(self) -> Deferred[None]:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        d: Deferred[None] = super().stopService()
        d.addBoth(self._close)
        return d

    def _close(self, result: object) -> object:
        self.log.close()
        return result


class ArchiveRetention(Service):
    """A cluster's log (PostgreSQL) pruned by every process, each a minute: deleting what is
    already gone costs an index probe, and no process has to be the one that does it."""

    def __init__(self, archive: Archive, clock: IReactorTime, retention: float,
                 interval: float = PRUNE_INTERVAL) -> None:
        self.archive = archive
        self.clock = clock
        self.retention = retention
        self.interval = interval
        self._loop: LoopingCall | None = None
        self._failing = False

    def startService(self) -> None:
        super().startService()
        if self.retention > 0:
            self._loop = LoopingCall(self.prune)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=True)

    def prune(self) -> Deferred[int]:
        olderThan = int(self.clock.seconds() * 1000 - self.retention * _DAY_MS)

        def failed(failure: Failure) -> int:
            if not self._failing:
                self._failing = True
                _log.warn("txchat: could not prune the chat log: {error}", error=str(failure.value))
            return 0

        def pruned(count: int) -> int:
            self._failing = False
            return count

        return self.archive.prune(olderThan).addCallbacks(pruned, failed)

    def stopService(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        super().stopService()
