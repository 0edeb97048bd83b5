"""The log's owner: prunes by --retention on the injected clock, and closes the log only once
the services that write to it have stopped."""

from __future__ import annotations

from typing import cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from txchat.chatlog import LogError
from txchat.logservice import PRUNE_INTERVAL, ArchiveRetention, LogService
from txchat.memorylog import MemoryLog
from tests.support.chatlogs import message

DAY = 86400.0


class Recorder(MemoryLog):
    def __init__(self) -> None:
        super().__init__()
        self.prunes: list[int] = []
        self.closed = False
        self.failing = False

    def prune(self, olderThan: int) -> int:
        self.prunes.append(olderThan)
        if self.failing:
            raise LogError("disk I/O error")
        return super().prune(olderThan)

    def close(self) -> None:
        self.closed = True


def test_retention_prunes_at_start_and_every_interval_what_is_older() -> None:
    clock = Clock()
    clock.advance(10 * DAY)
    log = Recorder()
    log.append([message("r", "A", 1, time=int(8 * DAY * 1000)), message("r", "A", 2, time=int(9.5 * DAY * 1000))])
    service = LogService(log, clock, retention=1)
    service.startService()
    assert log.prunes == [int(9 * DAY * 1000)]
    assert [m.seq for m in log.page("r", None, 10).messages] == [2]
    clock.advance(PRUNE_INTERVAL)
    assert log.prunes[-1] == int((9 * DAY + PRUNE_INTERVAL) * 1000) and len(log.prunes) == 2
    clock.advance(DAY / 2)
    assert log.page("r", None, 10).messages == []
    service.stopService()
    assert clock.getDelayedCalls() == [] and log.closed


def test_no_retention_no_pruning() -> None:
    clock = Clock()
    log = Recorder()
    service = LogService(log, clock, retention=0)
    service.startService()
    clock.advance(DAY)
    assert log.prunes == [] and clock.getDelayedCalls() == []
    service.stopService()
    assert log.closed


def test_a_prune_that_fails_is_logged_once_until_one_works() -> None:
    clock = Clock()
    log = Recorder()
    log.failing = True
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        service = LogService(log, clock, retention=1)
        service.startService()
        clock.advance(PRUNE_INTERVAL)
        clock.advance(PRUNE_INTERVAL)
        log.failing = False
        clock.advance(PRUNE_INTERVAL)
        service.stopService()
    finally:
        globalLogPublisher.removeObserver(observer)
    said = [e["log_format"] for e in events if "prune" in e.get("log_format", "")]
    assert len(log.prunes) == 4
    assert said == ["txchat: could not prune the chat log: {error}", "txchat: the chat log is pruned again"]


def test_the_log_closes_after_its_writers_have_stopped() -> None:
    log = Recorder()
    service = LogService(log, Clock(), retention=0)
    stopped: Deferred[None] = Deferred()

    class Writer(Service):
        def stopService(self) -> Deferred[None]:
            super().stopService()
            return stopped

    Writer().setServiceParent(service)
    service.startService()
    done = service.stopService()
    assert not log.closed and not done.called, "the writer is still flushing"
    stopped.callback(None)
    assert log.closed and done.called


class DeferredPrunes:
    """A cluster's log as retention sees it: prunes answered later, or failing."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, Deferred[int]]] = []

    def prune(self, olderThan: int) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        self.asked.append((olderThan, d))
        return d


def test_a_cluster_s_log_is_pruned_every_interval_one_prune_at_a_time_and_failures_said_once() -> None:
    clock = Clock()
    clock.advance(10 * DAY)
    archive = DeferredPrunes()
    retention = ArchiveRetention(archive, clock, retention=2)  # type: ignore[arg-type]
    said: list[LogEvent] = []
    observer = cast(ILogObserver, said.append)
    globalLogPublisher.addObserver(observer)
    try:
        retention.startService()
        assert [older for older, _ in archive.asked] == [int(8 * DAY * 1000)]
        clock.advance(PRUNE_INTERVAL)
        assert len(archive.asked) == 1, "the next waits for the one running"
        archive.asked[0][1].errback(LogError("connection refused"))
        clock.advance(PRUNE_INTERVAL)
        archive.asked[1][1].errback(LogError("connection refused"))
        clock.advance(PRUNE_INTERVAL)
        archive.asked[2][1].callback(3)
        assert len([e for e in said if "could not prune" in e.get("log_format", "")]) == 1
    finally:
        globalLogPublisher.removeObserver(observer)
        retention.stopService()
    assert clock.getDelayedCalls() == []
