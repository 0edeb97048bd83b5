"""Which chat log `--store` names, and opening it at start-up.

The URL is checked with the other options (a malformed one is a usage error); the store is
opened by makeService, before anything listens and before twistd daemonises, so that one that
cannot be opened stops start-up with one line at the terminal (L{CannotOpenStore}), as a busy
port does (L{txchat.listener.CannotListen}).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

from txchat.chatlog import ChatLog, LogError, StoreError
from txchat.config import MEMORY_STORE, Config
from txchat.pglog import PostgresLog
from txchat.sqlitelog import SqliteLog

__all__ = ["CannotOpenStore", "StoreURL", "checkStoreURL", "describeStore", "openArchive", "openLog", "parseStoreURL"]

MEMORY, SQLITE, POSTGRESQL = "memory", "sqlite", "postgresql"


class StoreURL(NamedTuple):
    kind: str  # MEMORY, SQLITE or POSTGRESQL
    where: str  # the file's path, the server's URL, or ""


def parseStoreURL(url: str) -> StoreURL:
    """C{memory}, C{sqlite:PATH} or C{postgresql://…}; ValueError with the reason if none."""
    if url == MEMORY_STORE:
        return StoreURL(MEMORY, "")
    scheme, colon, rest = url.partition(":")
    if colon and scheme == "sqlite":
        if not rest or rest.startswith("//"):
            raise ValueError(f"sqlite:PATH takes a file's path (sqlite:/var/lib/txchat/log.sqlite3), got {url!r}")
        if "\0" in rest:
            raise ValueError("the path has a NUL character")
        return StoreURL(SQLITE, rest)
    if colon and scheme in ("postgresql", "postgres") and rest.startswith("//"):
        try:
            urlsplit(url).port  # a port that is not a number raises here
        except ValueError as e:
            raise ValueError(f"{e}: {_withoutPassword(url)!r}") from None
        return StoreURL(POSTGRESQL, url)
    raise ValueError(f"expected sqlite:PATH, postgresql://… or memory, got {_withoutPassword(url)!r}")


def checkStoreURL(url: str) -> str:
    """The C{--store} option's coercer: its error names the option."""
    try:
        parseStoreURL(url)
    except ValueError as e:
        raise ValueError(f"--store: {e}") from None
    return url


def _withoutPassword(url: str) -> str:
    """The URL as a log line or an error may show it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    if "password" in parts.query.lower():  # libpq takes one in the query too (?password=...)
        query = "&".join("password=***" if pair.lower().startswith("password=") else pair
                         for pair in parts.query.split("&"))
        parts = parts._replace(query=query)
    return parts.geturl()


class CannotOpenStore(SystemExit):
    """The one line, as the exit status's message (Python prints it to stderr and exits 1)."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line

    def __str__(self) -> str:
        return self.line


def openLog(config: Config) -> ChatLog | None:
    """One process's chat log, open: SQLite's (None for C{memory}, where nothing is kept beyond
    the rooms' history, and for a cluster's, L{openArchive}); L{CannotOpenStore} (the start-up
    line) if it cannot be opened."""
    try:
        kind, where = parseStoreURL(config.storeURL)
        if kind == SQLITE:
            if config.redis:
                raise StoreError("sqlite: is one process's log; a cluster (--redis) keeps its log with "
                                 "postgresql://…")
            return SqliteLog(where)
        return None
    except (StoreError, ValueError) as e:
        raise CannotOpenStore(f"twistd txchat: error: --store: {e}") from None


def openArchive(config: Config, reactor: Any) -> PostgresLog | None:
    """A cluster's chat log (PostgreSQL), connected, when C{config} names one; written behind
    Redis by each process's L{txchat.logfeed.LogFeedService}."""
    kind, where = parseStoreURL(config.storeURL)
    if kind != POSTGRESQL:
        return None
    shown = _withoutPassword(where)
    if not config.redis:
        raise CannotOpenStore("twistd txchat: error: --store: postgresql:// is a cluster's log and goes with "
                              "--redis (one process keeps its log with sqlite:PATH)")
    try:
        return PostgresLog.connectNow(where, reactor)
    except LogError as e:
        raise CannotOpenStore(f"twistd txchat: error: --store {shown}: {e}") from None


def describeStore(config: Config) -> str:
    """Where the log is, for the start-up line."""
    kind, where = parseStoreURL(config.storeURL)
    if kind == SQLITE:
        return f"log in {where}"
    if kind == POSTGRESQL:
        return f"log in {_withoutPassword(where)}"
    if config.store is None:
        return "the chat log is not kept (--store)"
    return "the chat log is not kept (--store memory)"
