"""LogText writes twistd's own lines, formatting the time once a second; Autobahn's loggers
keep only errors; twistd's options say when LogText takes over."""

from __future__ import annotations

import io
from typing import Any, cast

import txaio
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, Logger, formatEventAsClassicLogText, formatTime, timeFormatRFC3339
from twisted.python.failure import Failure

from txchat.logtext import LogText, quietAutobahn, twistdWritesToStdout


def _event(clock: Clock, level: LogLevel = LogLevel.info, **fields: Any) -> dict[str, Any]:
    """An event as a Logger emits it, stamped with the clock's time."""
    captured: list[dict[str, Any]] = []
    log = Logger(namespace="txchat.test", observer=cast(ILogObserver, captured.append))
    log.emit(level, fields.pop("format", "connect {peer}"), **{"peer": "127.0.0.1:5", **fields})
    event = captured[0]
    event["log_time"] = clock.seconds()
    return event


def _twistds(event: dict[str, Any]) -> str:
    """What twistd's own observer writes for the event."""
    return formatEventAsClassicLogText(event, formatTime=lambda when: formatTime(when, timeFormatRFC3339)) or ""


def test_lines_are_twistds_own() -> None:
    clock = Clock()
    clock.advance(1_800_000_000.25)
    out = io.StringIO()
    observer = LogText(out)
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    events = [
        _event(clock),
        _event(clock, LogLevel.warn, format="two\nlines"),
        _event(clock, LogLevel.error, format="failed {peer}", log_failure=failure),
        {**_event(clock), "log_system": "-", "log_format": "legacy"},
        # Formats str.format_map cannot do, or does not do as Twisted does: Twisted's text.
        _event(clock, format="{peer!r:>20} {n:03d} {d[k]} {obj.real}", n=7, d={"k": "v"}, obj=3),
        _event(clock, format="called {f()}", f=lambda: "back"),
        _event(clock, format="positional {}"),
        _event(clock, format="missing {nothing}"),
        {**_event(clock), "log_format": b"bytes {peer}"},
        {**_event(clock), "log_format": None},
        {k: v for k, v in _event(clock).items() if k not in ("log_level", "log_namespace")},
    ]
    for event in events:
        observer(event)
    assert out.getvalue() == "".join(_twistds(event) for event in events)


def test_the_time_prefix_is_formatted_once_a_second_and_follows_the_clock() -> None:
    clock = Clock()
    clock.advance(1_800_000_000)
    formatted: list[float] = []

    def stamp(when: float) -> str:
        formatted.append(when)
        return f"T{when:.0f}"

    out = io.StringIO()
    observer = LogText(out, formatTime=stamp)
    for _ in range(4):  # four lines within one second
        observer(_event(clock))
        clock.advance(0.2)
    clock.advance(0.3)  # into the next second
    observer(_event(clock))
    clock.advance(5)
    observer(_event(clock))
    assert formatted == [1_800_000_000, 1_800_000_001, 1_800_000_006]
    stamps = [line.split(" ")[0] for line in out.getvalue().splitlines()]
    assert stamps == ["T1800000000"] * 4 + ["T1800000001", "T1800000006"]


def test_debug_events_are_left_out() -> None:
    clock = Clock()
    out = io.StringIO()
    observer = LogText(out)
    observer(_event(clock, LogLevel.debug, format="cut {peer}: no complete request"))
    assert out.getvalue() == ""
    observer(_event(clock, LogLevel.info))
    assert out.getvalue().endswith("[txchat.test#info] connect 127.0.0.1:5\n")


def test_an_event_without_a_time_gets_a_dash() -> None:
    out = io.StringIO()
    event = _event(Clock())
    del event["log_time"]
    LogText(out)(event)
    assert out.getvalue() == "- [txchat.test#info] connect 127.0.0.1:5\n"


def test_twistd_options_that_leave_its_output_on_stdout() -> None:
    assert twistdWritesToStdout({"nodaemon": True, "logfile": None})
    assert twistdWritesToStdout({"nodaemon": True, "logfile": "-"})
    assert not twistdWritesToStdout({"nodaemon": False, "logfile": None})  # a daemon: twistd.log
    assert not twistdWritesToStdout({"nodaemon": True, "logfile": "chat.log"})
    assert not twistdWritesToStdout({"nodaemon": True, "syslog": True})
    assert not twistdWritesToStdout({"nodaemon": True, "logger": "some.observer"})
    assert not twistdWritesToStdout(None)  # makeService called without twistd


def test_quietAutobahn_leaves_autobahns_loggers_errors_only() -> None:
    txaio.use_twisted()
    before = txaio.get_global_log_level()  # type: ignore[attr-defined]  # txaio.use_twisted() sets these
    captured: list[dict[str, Any]] = []
    log = txaio.make_logger(observer=captured.append)  # type: ignore[attr-defined]
    try:
        quietAutobahn()
        log.warn("dropping connection to peer")
        log.info("failing WebSocket opening handshake")
        log.error("an error")
        assert [event["log_format"] for event in captured] == ["an error"]
    finally:
        txaio.set_global_log_level(before)  # type: ignore[attr-defined]
