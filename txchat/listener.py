"""Listening on one endpoint, and saying so: where a person opens the chat, or why it cannot.

twistd would log a failure to listen and run on, serving nothing (and a daemonised twistd
would even exit 0). L{Listener} fails the start instead, with one line, as a bad option does.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()


class CannotListen(SystemExit, Exception):
    """Both kinds on purpose. Under ``twistd -n`` a SystemExit ends the process with status 1
    and no traceback; a daemonising twistd passes an Exception's text (the reason first: it
    keeps only 100 bytes) to the parent process through its status pipe, and the parent
    prints it and exits 1."""

    def __init__(self, reason: str) -> None:
        super().__init__(1)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


_EVERYWHERE = ("0.0.0.0", "::")


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
    ) -> None:
        """
        @param option: the command-line option the endpoint came from, for the error line.
        @param what: what is served, for the start-up line: C{"chat page at {url}"}.
        """
        self.option = option
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.what = what
        self.path = path
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """Listen now, so that a busy or forbidden port stops twistd before it runs."""
        super().privilegedStartService()
        failures: list[Failure] = []
        self.endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0].value
            error = getattr(reason, "socketError", None)
            detail = getattr(error, "strerror", None) or str(reason)
            _log.critical("cannot listen on {endpoint} ({option}): {detail}", endpoint=self.description,
                          option=self.option, detail=detail)
            # twistd has replaced sys.stderr with the log: tell the person at the terminal, as
            # twistd itself does when a daemon fails to start.
            if sys.__stderr__ is not None:
                sys.__stderr__.write(f"twistd txchat: error: {self.option} {self.description}: {detail}\n")
            raise CannotListen(f"{detail}: {self.option} {self.description}")

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        where = getattr(port.getHost(), "host", None)
        _log.info(
            "txchat: {what}{everywhere}",
            what=self.what.format(url=describe(self.description, port, self.path)),
            everywhere=", on all interfaces" if where in _EVERYWHERE else "",
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        return succeed(None) if port is None else maybeDeferred(port.stopListening)  # type: ignore[call-overload]
