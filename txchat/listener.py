"""Listening on one endpoint, and saying so: where a person opens the chat, or why it cannot.

twistd would log a failure to listen and run on, serving nothing (and a daemonised twistd
would even exit 0). L{Listener} stops the start instead, with one line, as a bad option does.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()


class CannotListen(SystemExit):
    """The one line, as the exit status's message: Python prints it to stderr and exits 1,
    without a traceback. Raised from makeService (L{Listener.listen}), so before a daemonising
    twistd forks: after the fork, a failure reaches the terminal only as the bytes repr that
    twistd's status pipe carries, under a "Please look at log file" line."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line

    def __str__(self) -> str:
        return self.line


_EVERYWHERE = ("0.0.0.0", "::")


def _why(reason: object) -> str:
    """The system's words for a failure to listen (and the file, for a UNIX socket's path or
    lock), not an exception's repr."""
    error = getattr(reason, "socketError", reason)  # CannotListenError wraps the socket's error
    if not isinstance(error, OSError) or not error.strerror:
        return str(reason)
    where = error.filename2 if error.filename2 is not None else error.filename
    return f"{error.strerror} ({os.fsdecode(where)})" if where is not None else error.strerror


def describe(description: str, port: IListeningPort, path: str) -> str:
    """The URL of C{path} on a listening port, as a person would type it."""
    address: Any = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return f"unix:{address.name} (UNIX socket; path {path})"
    scheme = "https" if description.split(":", 1)[0] in ("ssl", "tls") else "http"
    shown = "localhost" if host in _EVERYWHERE else f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{address.port}{path}"


class Listener(Service):
    """One listening port for the lifetime of the service."""

    def __init__(
        self,
        option: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        what: str,
        path: str = "/",
        note: str = "",
    ) -> None:
        """
        @param option: the command-line option the endpoint came from, for the error line.
        @param what: what is served, for the start-up line: C{"chat page at {url}"}.
        @param note: said at the end of the start-up line (where the chat log is).
        """
        self.option = option
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.what = what
        self.path = path
        self.note = note
        self.port: IListeningPort | None = None

    def listen(self) -> None:
        """Listen now, synchronously (as Twisted's own endpoints do), or raise L{CannotListen}.
        makeService calls this so that a busy or forbidden port stops twistd before it
        daemonises, while the person who started it still has the terminal."""
        if self.port is not None:
            return
        failures: list[Failure] = []
        self.endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            raise CannotListen(f"twistd txchat: error: {self.option} {self.description}: {_why(failures[0].value)}")

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self.listen()

    def startService(self) -> None:
        self.listen()
        super().startService()
        if self.port is not None:
            where = getattr(self.port.getHost(), "host", None)
            _log.info(
                "txchat: {what}{everywhere}{note}",
                what=self.what.format(url=describe(self.description, self.port, self.path)),
                everywhere=", on all interfaces" if where in _EVERYWHERE else "",
                note=f"; {self.note}" if self.note else "",
            )

    def _listening(self, port: IListeningPort) -> None:
        self.port = port

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        return succeed(None) if port is None else maybeDeferred(port.stopListening)  # type: ignore[call-overload]
