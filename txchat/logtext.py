"""The log as twistd writes it to a terminal or a service manager, for less.

twistd's own observer formats the time of every event afresh and each text with Twisted's
pure-Python formatter: some 11 us a line, and a connect storm logs thousands of lines a
second, all with the same few timestamps. This one writes the same lines for about 2 us: the
time prefix formatted once a second, the usual text through C{str.format_map}. It leaves out
debug events. Autobahn's own lines stay out too (L{quietAutobahn}): txchat logs each refusal and
each disconnect itself, once, with the peer and the close code, where Autobahn would log up
to three (warnings among them, which any client could make it write).
"""

from __future__ import annotations

from typing import IO, Any, Callable

import txaio
from twisted.logger import ILogObserver, LogEvent, LogLevel, eventAsText, formatEvent, formatTime, timeFormatRFC3339
from zope.interface import implementer


def _rfc3339(when: float) -> str:
    return formatTime(when, timeFormatRFC3339)


def _message(event: LogEvent) -> str:
    """The event's text, as L{formatEvent} makes it. Twisted's formatter is a pure-Python
    C{string.Formatter}, fifteen times slower than C{str.format_map}, which gives the same
    text for every format it can do (all but Twisted's C{{name()}} calls, which fail it)."""
    format = event.get("log_format")
    if type(format) is str and "log_flattened" not in event:
        try:
            return format.format_map(event)
        except Exception:
            pass  # Twisted's formatter says what was wrong
    return formatEvent(event)


@implementer(ILogObserver)
class LogText:
    """twistd's classic lines (C{TIME [SYSTEM] TEXT}, continuation lines indented) on C{out},
    info and above.

    @param formatTime: the time prefix for a whole second (twistd's format by default)."""

    def __init__(self, out: IO[str], formatTime: Callable[[float], str] = _rfc3339) -> None:
        self._out = out
        self._formatTime = formatTime
        self._second: int | None = None
        self._prefix = ""

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        if level is LogLevel.debug:
            return
        if "log_failure" in event or "log_system" in event:
            text = eventAsText(event, includeTimestamp=False)
        else:  # the usual event: what eventAsText writes, for a fraction of its cost
            message = _message(event)
            text = message and f"[{event.get('log_namespace', '-')}#{level.name if level else '-'}] {message}"
        if not text:
            return
        when: Any = event.get("log_time")
        if when is None:
            prefix = "-"
        else:
            second = int(when)  # the prefix has no fractions of a second
            if second != self._second:
                self._second, self._prefix = second, self._formatTime(second)
            prefix = self._prefix
        self._out.write(f"{prefix} {text}\n".replace("\n", "\n\t", text.count("\n")))
        self._out.flush()


def quietAutobahn() -> None:
    """Autobahn's loggers (txaio's) keep errors only: their warnings and info lines repeat
    what txchat logs itself, and a call at a level that is off costs nothing."""
    txaio.use_twisted()  # as Autobahn's Twisted modules do: the loggers are Twisted's
    txaio.set_global_log_level("error")  # type: ignore[attr-defined]  # set by txaio.use_twisted()


def twistdWritesToStdout(twistdOptions: Any) -> bool:
    """Whether twistd (its options, the parent of the plugin's) would log to standard output
    in its own format: in the foreground, with no --logfile, --syslog or --logger of its own."""
    get = getattr(twistdOptions, "get", None)
    if get is None:
        return False
    if get("logger") or get("syslog"):
        return False
    return bool(get("nodaemon")) and get("logfile") in (None, "", "-")
