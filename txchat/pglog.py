"""A cluster's chat log in PostgreSQL (SPEC §16), written behind Redis by L{txchat.logfeed}.

psycopg 3, synchronous, on a thread of its own: one connection, one thread, so calls run in
the order made and the reactor never waits on the network. (asyncpg would need an asyncio loop
beside Twisted's; docs/cluster.md, "The chat log of a cluster", has the figures.)

Order. Redis numbers a room's messages in one stream (an epoch) at a time; a Redis that lost
its data starts a new epoch, and an epoch's name says nothing of its age. The log orders a
room's epochs by when each was first written here: table C{epochs} gives each (room, epoch) a
number from a sequence the first time it is seen, and each message carries its epoch's number
(C{ord}), so scrollback across epochs is one walk down the index (room, ord, seq). An id given
at insert would not do: several processes write concurrently, each a batch of its own, so
insert order is not numbering order even within an epoch.

A deleted message stays as a tombstone (its text and name cleared): the stream may bring the
same message again (a consumer that died before it acknowledged), and its write must not bring
the message back; and recovery can tell a deleted number from a missing one.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Sequence, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txchat.chatlog import Head, LogError, Page
from txchat.stream import Delivery

__all__ = ["PostgresLog", "SCHEMA_VERSION", "reason"]

_log = Logger()
T = TypeVar("T")

# Connection defaults an operator's URL may override: a PostgreSQL that is cut off without a
# reset must not hold the log's only thread for TCP's minutes (tcp_user_timeout: unacknowledged
# data for 10 s ends the connection; keepalives do the same for an idle one).
_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
    "application_name": "txchat",
}

# Upgrade steps: step N brings the schema from version N-1 to N, in one transaction. A new
# version appends a step; a step is never changed once released.
_STEPS: list[list[str]] = [
    [
        "CREATE SEQUENCE epoch_order",
        # Each room's epochs in the order first written (see the module's docstring).
        """CREATE TABLE epochs (
            room text NOT NULL,
            epoch text NOT NULL,
            ord bigint NOT NULL DEFAULT nextval('epoch_order'),
            first_time bigint NOT NULL,
            PRIMARY KEY (room, epoch))""",
        """CREATE TABLE messages (
            room text NOT NULL,
            epoch text NOT NULL,
            seq bigint NOT NULL,
            ord bigint NOT NULL,
            time bigint NOT NULL,
            name text NOT NULL,
            text text NOT NULL,
            sender text NOT NULL DEFAULT '',
            ref text,
            deleted boolean NOT NULL DEFAULT false,
            PRIMARY KEY (room, epoch, seq))""",
        "CREATE INDEX messages_order ON messages (room, ord, seq)",
        "CREATE INDEX messages_time ON messages (time)",
        "CREATE INDEX messages_ref ON messages (sender, ref) WHERE ref IS NOT NULL",
        """CREATE TABLE reads (
            identity text NOT NULL,
            room text NOT NULL,
            epoch text NOT NULL,
            seq bigint NOT NULL,
            ord bigint NOT NULL,
            PRIMARY KEY (identity, room))""",
    ],
]
SCHEMA_VERSION = len(_STEPS)
_LOCK = 0x7478636861746C67  # pg_advisory_xact_lock key: processes starting together upgrade one at a time

_COLUMNS = "epoch, seq, time, name, text, sender, ref"
_NEWEST = 2**63 - 1  # after every epoch's ord


def reason(error: BaseException) -> str:
    """The short reason of a psycopg error, for one line: libpq's own words without the
    address and the hints ("password authentication failed for user "x"", "Connection refused")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if "FATAL:" in line:
            return line.split("FATAL:", 1)[1].strip()
    for line in reversed(lines):
        if " failed: " in line:
            return line.rsplit(" failed: ", 1)[1].strip()
    return lines[0] if lines else type(error).__name__


def _clean(text: str) -> str:
    return text.replace("\x00", "\ufffd") if "\x00" in text else text  # PostgreSQL's text holds no NUL


def _delivery(room: str, row: tuple[Any, ...]) -> Delivery:
    epoch, seq, time, name, text, sender, ref = row
    return Delivery(room, text.encode("utf-8"), name, time, seq, epoch, sender, ref)


class _Call:
    """One call on the log's thread, for its deadline."""

    def __init__(self) -> None:
        self.timer: IDelayedCall | None = None
        self.done = False
        self.cut = False


class PostgresLog:
    """The log in PostgreSQL; every call returns a Deferred and runs on the log's own thread.

    @param url: a libpq URL or conninfo string (C{postgresql://user:password@host:port/db}).
    @param reactor: an C{IReactorThreads} (and C{IReactorCore}, C{IReactorTime}): where
        results are delivered.
    @param timeout: how long a call may wait for PostgreSQL before its connection counts as
        lost (0: as long as TCP does).
    """

    durable = True

    def __init__(self, url: str, reactor: Any, timeout: float = 15.0) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as e:
            raise LogError(f"not a PostgreSQL URL: {reason(e)}") from None
        self._params = {**_DEFAULTS, **{k: str(v) for k, v in params.items() if v is not None}}
        self._reactor = reactor
        self.timeout = timeout
        self._pool: ThreadPool | None = None
        self._trigger: Any = None
        self._connection: psycopg.Connection[Any] | None = None
        self.where = f"{self._params.get('host', 'localhost')}:{self._params.get('port', 5432)}"

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    def connect(cls, url: str, reactor: Any, timeout: float = 15.0) -> Deferred[PostgresLog]:
        """Open the log (connect, create or upgrade the schema); fails fast with L{LogError}
        and a short reason, for a one-line start-up error."""
        log = cls(url, reactor, timeout)

        def failed(failure: Any) -> Any:
            return log.close().addCallback(lambda _: failure)

        return log.open().addCallbacks(lambda _: log, failed)

    @classmethod
    def connectNow(cls, url: str, reactor: Any, timeout: float = 15.0) -> PostgresLog:
        """L{connect} blocking the calling thread: for start-up before the reactor runs."""
        log = cls(url, reactor, timeout)
        try:
            log._open()
        except LogError:
            log._drop()
            raise
        return log

    def open(self) -> Deferred[None]:
        return self._call(self._open)

    def _open(self) -> None:
        connection = self._connect()
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
                row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] if row and row[0] is not None else 0
                if version > SCHEMA_VERSION:
                    raise LogError(f"the log's schema is version {version}, newer than this txchat's "
                                   f"({SCHEMA_VERSION})")
                for number in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _STEPS[number - 1]:
                        connection.execute(statement)
                    _log.info("chat log at {where}: schema version {number}", where=self.where, number=number)
                if version < SCHEMA_VERSION:
                    connection.execute("DELETE FROM schema_version")
                    connection.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
        except psycopg.Error as e:
            self._drop()
            raise LogError(reason(e)) from None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            try:
                self._connection = psycopg.connect(**self._params, autocommit=True)  # type: ignore[arg-type]
            except psycopg.Error as e:
                raise LogError(reason(e)) from None
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except psycopg.Error:
                pass

    def close(self) -> Deferred[None]:
        """Let go of the connection and stop the thread."""
        if self._pool is None:
            self._drop()
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d

        def stop(result: object) -> object:
            self._stopPool()
            return result

        return self._call(self._drop).addBoth(stop)

    def _stopPool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None

    # -- running on the thread -------------------------------------------------------------

    def _call(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None:
            self._pool = ThreadPool(1, 1, "txchat-pglog")
            self._pool.start()
            self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self._stopPool)
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def _run(self, f: Callable[..., T], *args: Any, deadline: float | None = None) -> Deferred[T]:
        """C{f(connection, *args)} on the thread, connected again if the connection was lost;
        a failure is a L{LogError} with a short reason (and a lost connection is dropped).

        A call that PostgreSQL leaves unanswered for C{deadline} seconds (by default the log's
        C{timeout}) from when it began ends the connection, as a lost one: a server that hangs,
        or a path that holds packets without dropping them, would otherwise hold the log's
        only thread for as long as TCP waits, which is forever while the peer's kernel still
        acknowledges."""
        limit = self.timeout if deadline is None else deadline

        def run() -> T:
            connection = self._connect()
            call = _Call()
            if limit > 0:
                self._reactor.callFromThread(self._arm, call, connection, limit)
            try:
                return f(connection, *args)
            except psycopg.Error as e:
                if connection.closed or connection.broken or isinstance(e, psycopg.OperationalError):
                    self._drop()
                if call.cut:
                    raise LogError(f"no answer from PostgreSQL for {limit:g}s") from None
                raise LogError(reason(e)) from None
            finally:
                call.done = True  # (seen by a _cut already under way on the reactor)
                if limit > 0:
                    self._reactor.callFromThread(self._disarm, call)

        return self._call(run)

    def _arm(self, call: _Call, connection: psycopg.Connection[Any], limit: float) -> None:
        if not call.done:
            call.timer = self._reactor.callLater(limit, self._cut, call, connection)

    def _disarm(self, call: _Call) -> None:
        if call.timer is not None and call.timer.active():
            call.timer.cancel()

    def _cut(self, call: _Call, connection: psycopg.Connection[Any]) -> None:
        """End the connection under the thread's feet: shutting its socket down (through a
        duplicate of its descriptor, so that nothing is closed under libpq) makes the call
        waiting on it fail at once."""
        if call.done:
            return  # answered meanwhile: the connection may be the next call's now
        call.cut = True
        try:
            duplicate = socket.socket(fileno=os.dup(connection.pgconn.socket))
        except (OSError, psycopg.Error):
            return  # already gone
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            duplicate.close()

    # -- writing ---------------------------------------------------------------------------

    def write(self, batch: Sequence[Delivery]) -> Deferred[int]:
        """Write numbered messages in one transaction; one already there (room, epoch, seq) is
        left as it is. Fires with how many were new."""
        rows = sorted(
            (m.room, m.epoch, m.seq, m.time, _clean(m.name), _clean(m.text.decode("utf-8", "replace")),
             _clean(m.sender), _clean(m.ref) if m.ref is not None else None)
            for m in batch if m.epoch is not None and m.seq is not None
        )
        if not rows:
            return self._call(lambda: 0)
        return self._run(self._write, rows)

    @staticmethod
    def _write(connection: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> int:
        columns = list(zip(*rows))
        # In sorted order, so that two processes writing the same new rows cannot deadlock.
        firsts: dict[tuple[str, str], int] = {}
        for room, epoch, _, time, *_rest in rows:
            firsts[room, epoch] = min(time, firsts.get((room, epoch), time))
        streams = sorted(firsts)
        with connection.transaction():
            connection.execute(
                "INSERT INTO epochs (room, epoch, first_time) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) ORDER BY 1, 2 "
                "ON CONFLICT DO NOTHING",
                ([r for r, _ in streams], [e for _, e in streams], [firsts[s] for s in streams]),
            )
            cursor = connection.execute(
                "INSERT INTO messages (room, epoch, seq, ord, time, name, text, sender, ref) "
                "SELECT m.room, m.epoch, m.seq, e.ord, m.time, m.name, m.text, m.sender, m.ref "
                "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[],"
                " %s::text[], %s::text[]) AS m (room, epoch, seq, time, name, text, sender, ref) "
                "JOIN epochs e USING (room, epoch) ORDER BY m.room, m.epoch, m.seq "
                "ON CONFLICT (room, epoch, seq) DO NOTHING",
                [list(column) for column in columns],
            )
            return cursor.rowcount

    def delete(self, room: str, epoch: str, seq: int, known: bool = False) -> Deferred[bool]:
        """Remove one message (a tombstone stays: see the module's docstring); whether it was
        there. With C{known} (Redis has it, and it may not be written yet) the tombstone is
        made now, so that the message's write, when it comes, leaves it out."""

        def delete(connection: psycopg.Connection[Any]) -> bool:
            with connection.transaction():
                cursor = connection.execute(
                    "UPDATE messages SET deleted = true, name = '', text = '', ref = NULL "
                    "WHERE room = %s AND epoch = %s AND seq = %s AND NOT deleted", (room, epoch, seq))
                if cursor.rowcount == 1 or not known:
                    return cursor.rowcount == 1
                connection.execute("INSERT INTO epochs (room, epoch, first_time) VALUES (%s, %s, 0) "
                                   "ON CONFLICT DO NOTHING", (room, epoch))
                # Dated now, so that retention keeps it as long as the message could still come.
                connection.execute(
                    "INSERT INTO messages (room, epoch, seq, ord, time, name, text, deleted) "
                    "SELECT %s, %s, %s, ord, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, '', '', "
                    "true FROM epochs WHERE room = %s AND epoch = %s "
                    "ON CONFLICT (room, epoch, seq) DO NOTHING", (room, epoch, seq, room, epoch))
                return True

        return self._run(delete)

    def prune(self, olderThan: int) -> Deferred[int]:
        """Delete messages accepted before C{olderThan} (ms since the Unix epoch); how many."""

        def prune(connection: psycopg.Connection[Any]) -> int:
            return connection.execute("DELETE FROM messages WHERE time < %s", (olderThan,)).rowcount

        return self._run(prune, deadline=0)  # (a long first prune is no outage)

    # -- reading ---------------------------------------------------------------------------

    def page(self, room: str, before: Head | None, limit: int) -> Deferred[Page]:
        """Up to C{limit} messages older than C{before} (None: the newest), across epochs in the
        order they were first written, oldest first; one index walk however far back. An epoch
        the log has not seen is newer than every one it has: its messages are still on their
        way from Redis."""

        def page(connection: psycopg.Connection[Any]) -> Page:
            if before is None:
                rows = connection.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE room = %s AND NOT deleted "
                    "ORDER BY ord DESC, seq DESC LIMIT %s", (room, limit + 1)).fetchall()
            else:
                rows = connection.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE room = %s AND NOT deleted AND (ord, seq) < "
                    "(coalesce((SELECT ord FROM epochs WHERE room = %s AND epoch = %s), %s), %s) "
                    "ORDER BY ord DESC, seq DESC LIMIT %s",
                    (room, room, before.epoch, _NEWEST, before.seq, limit + 1)).fetchall()
            more = len(rows) > limit
            return Page([_delivery(room, row) for row in reversed(rows[:limit])], more)

        return self._run(page)

    def recent(self, room: str, epoch: str, limit: int) -> Deferred[list[Delivery]]:
        """The newest C{limit} messages of the room's stream C{epoch}, oldest first."""

        def recent(connection: psycopg.Connection[Any]) -> list[Delivery]:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room = %s AND epoch = %s AND NOT deleted "
                "ORDER BY seq DESC LIMIT %s", (room, epoch, limit)).fetchall()
            return [_delivery(room, row) for row in reversed(rows)]

        return self._run(recent)

    def after(self, room: str, epoch: str, seq: int, limit: int) -> Deferred[list[Delivery] | None]:
        """Every message of stream C{epoch} after number C{seq} that the log holds, oldest first;
        None when those are more than C{limit}, or numbers between them are missing (deleted
        ones aside). Messages still on their way from Redis are not here yet: the newest the
        log has is not the room's newest."""

        def after(connection: psycopg.Connection[Any]) -> list[Delivery] | None:
            rows = connection.execute(
                f"SELECT {_COLUMNS}, deleted FROM messages WHERE room = %s AND epoch = %s AND seq > %s "
                "ORDER BY seq LIMIT %s", (room, epoch, seq, limit + 1)).fetchall()
            if len(rows) > limit or any(row[1] != seq + 1 + i for i, row in enumerate(rows)):
                return None
            return [_delivery(room, row[:-1]) for row in rows if not row[-1]]

        return self._run(after)

    def sent(self, sender: str, ref: str, notBefore: int) -> Deferred[Head | None]:
        """The (epoch, seq) of the message C{sender} sent with ID C{ref}, accepted at or after
        C{notBefore} (ms since the Unix epoch)."""

        def sent(connection: psycopg.Connection[Any]) -> Head | None:
            row = connection.execute(
                "SELECT epoch, seq FROM messages WHERE sender = %s AND ref = %s AND time >= %s "
                "ORDER BY time DESC LIMIT 1", (sender, ref, notBefore)).fetchone()
            return Head(row[0], row[1]) if row else None

        return self._run(sent)

    # -- readers' positions ----------------------------------------------------------------

    def setRead(self, identity: str, room: str, position: Head) -> Deferred[Head]:
        """Store a reader's position unless it is behind the stored one (epochs compared in the
        order first written; an epoch not yet written counts as written now); the position now
        stored."""

        def setRead(connection: psycopg.Connection[Any]) -> Head:
            with connection.transaction():
                connection.execute(
                    "INSERT INTO epochs (room, epoch, first_time) "
                    "VALUES (%s, %s, (extract(epoch from now()) * 1000)::bigint) ON CONFLICT DO NOTHING",
                    (room, position.epoch))
                connection.execute(
                    "INSERT INTO reads AS r (identity, room, epoch, seq, ord) "
                    "SELECT %s, %s, %s, %s, ord FROM epochs WHERE room = %s AND epoch = %s "
                    "ON CONFLICT (identity, room) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, "
                    "ord = excluded.ord WHERE (r.ord, r.seq) < (excluded.ord, excluded.seq)",
                    (identity, room, position.epoch, position.seq, room, position.epoch))
                row = connection.execute(
                    "SELECT epoch, seq FROM reads WHERE identity = %s AND room = %s", (identity, room)).fetchone()
            assert row is not None
            return Head(row[0], row[1])

        return self._run(setRead)

    def read(self, identity: str, room: str) -> Deferred[Head | None]:
        def read(connection: psycopg.Connection[Any]) -> Head | None:
            row = connection.execute(
                "SELECT epoch, seq FROM reads WHERE identity = %s AND room = %s", (identity, room)).fetchone()
            return Head(row[0], row[1]) if row else None

        return self._run(read)
