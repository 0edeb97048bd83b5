"""The chat log in a SQLite file (`--store sqlite:PATH`): one process's durable history.

WAL with synchronous=NORMAL: a commit is a write to the WAL in the OS's cache, no fsync, so
the broker can write each batch before delivering it. What the process has written survives
its SIGKILL (the OS has it); only the machine going down (power loss, kernel panic) may lose
the last moments before a checkpoint.

That is what the `run` table is for. Each start records the machine's boot id and "not closed
cleanly"; L{SqliteLog.close} records "closed". A start that finds the last run not closed *and*
a different boot id cannot tell what was lost, so every room it knows starts a new epoch
(L{SqliteLog.heads} leaves them out) rather than hand out a number twice. The same boot means
the process died but the machine did not: nothing is lost, and rooms go on. The rows marking a
run are committed with synchronous=FULL, so that a power loss cannot take back the mark of the
run it interrupted. Streams begun before such a start stay out of L{SqliteLog.heads} for good
(the `horizon`), also when the next run dies in turn.

One running txchat per file: an exclusive flock on a sidecar `PATH.lock`, held for the life of
the process. Not on the database itself: SQLite's own locks on it are POSIX locks, which a
process loses when it closes *any* descriptor of the file, and a flock (unlike a POSIX lock)
is inherited by a daemonising twistd's child. A second txchat gets L{StoreError} at once.

The connection is opened where it is first used: the checks (lock, schema, run) run in
makeService, before twistd forks, and close their connection; SQLite connections must not cross
a fork.

Schema upgrades run in place at open, one step per version (L{_STEPS}), each in a transaction.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from typing import Any, Callable, Iterable, Sequence

from twisted.logger import Logger

from txchat.chatlog import Head, LogError, Page, StoreError
from txchat.stream import Delivery

__all__ = ["SqliteLog", "bootId"]

_log = Logger()

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def bootId() -> str:
    """This boot of the machine ("" where the system does not say: any unclean stop then
    counts as the machine's)."""
    try:
        with open(BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return ""


# _STEPS[n] takes the schema from version n to n + 1. Version 2 adds a step; never edit one.
_STEPS: list[list[str]] = [
    [
        # Streams (room and epoch) in the order they began; seq is the newest number written
        # in it, deleted messages too, so that numbering goes on after a delete. Never deleted.
        # Ids here and in messages are row ids, each one more than the largest (no AUTOINCREMENT,
        # whose bookkeeping is one more page to write per commit): so they are write order.
        """CREATE TABLE streams (
            id INTEGER PRIMARY KEY,
            room TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
            UNIQUE (room, epoch))""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            room TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
            time INTEGER NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL,
            sender TEXT NOT NULL, ref TEXT,
            UNIQUE (room, epoch, seq))""",
        # Every index ends with the row id: this one is (room, id), for paging back.
        "CREATE INDEX messages_by_room ON messages (room)",
        "CREATE INDEX messages_by_send ON messages (sender, ref) WHERE ref IS NOT NULL",
        "CREATE INDEX messages_by_time ON messages (time)",
        # What was deleted (not pruned): recovery skips these numbers, a late append does not
        # bring them back. Kept when older ones are pruned (a few bytes per deletion), so that
        # both stay true.
        """CREATE TABLE deleted (
            room TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL,
            PRIMARY KEY (room, epoch, seq)) WITHOUT ROWID""",
        """CREATE TABLE reads (
            identity TEXT NOT NULL, room TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (identity, room)) WITHOUT ROWID""",
        # One row: how the last run ended (module docstring).
        """CREATE TABLE run (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            clean INTEGER NOT NULL, boot TEXT NOT NULL, horizon INTEGER NOT NULL)""",
    ],
]
VERSION = len(_STEPS)

_COLUMNS = "room, epoch, seq, time, name, text, sender, ref"
_INSERT = (
    f"INSERT OR IGNORE INTO messages ({_COLUMNS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8"
    " WHERE NOT EXISTS (SELECT 1 FROM deleted WHERE room = ?1 AND epoch = ?2 AND seq = ?3)"
)
_UNKNOWN = float("inf")  # the rank of an epoch the log has no message of: newer than any

# Connections opened before a fork, kept so that the child never closes them (SQLite's
# advice: a connection that crossed a fork is neither used nor closed).
_forsaken: list[sqlite3.Connection] = []


def _connect(path: str) -> sqlite3.Connection:
    # Autocommit (isolation_level None): every transaction here is an explicit BEGIN.
    # A short busy timeout: only a person's own sqlite3 shell could hold the write lock, and
    # the reactor should not wait long for one.
    connection = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: cannot use write-ahead logging (journal mode {mode})")
        connection.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


def _lock(path: str) -> int:
    lockPath = path + ".lock"
    try:
        fd = os.open(lockPath, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StoreError(f"{e.strerror} ({lockPath})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if isinstance(e, BlockingIOError):
            raise StoreError(f"{path} is in use by another running txchat (it holds {lockPath})") from None
        raise StoreError(f"{e.strerror} ({lockPath})") from None
    return fd


def _upgrade(connection: sqlite3.Connection, path: str) -> None:
    """Create the schema in a new file, or bring an older one up to L{VERSION}."""
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" in tables:
        version = connection.execute("SELECT version FROM schema_version").fetchone()[0]
    elif tables - {"sqlite_sequence"}:
        raise StoreError(f"{path}: a SQLite database, but not a txchat log")
    else:
        version = 0
    if version > VERSION:
        raise StoreError(f"{path}: made by a newer txchat (schema version {version}; this one knows {VERSION})")
    for step in range(version, VERSION):
        connection.execute("BEGIN IMMEDIATE")
        try:
            if step == 0:
                connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                connection.execute("INSERT INTO schema_version VALUES (0)")
            for statement in _STEPS[step]:
                connection.execute(statement)
            connection.execute("UPDATE schema_version SET version = ?", (step + 1,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if version:
            _log.info("txchat: the chat log {path} is now at schema version {version}", path=path, version=step + 1)


def _begin(connection: sqlite3.Connection, path: str, boot: str) -> int:
    """Record this run as running, on this boot; the horizon (module docstring)."""
    row = connection.execute("SELECT clean, boot, horizon FROM run").fetchone()
    horizon = 0 if row is None else row[2]
    if row is not None and not row[0] and (not boot or row[1] != boot):
        horizon = connection.execute("SELECT coalesce(max(id), 0) FROM streams").fetchone()[0]
        _log.warn(
            "txchat: the machine went down while the chat log {path} was open, and its newest "
            "messages may be lost: every room begins a new epoch", path=path,
        )
    _mark(connection, 0, boot, horizon)
    return int(horizon)


def _mark(connection: sqlite3.Connection, clean: int, boot: str, horizon: int) -> None:
    connection.execute("PRAGMA synchronous=FULL")  # this commit, and the WAL before it, on disk
    try:
        connection.execute("INSERT OR REPLACE INTO run VALUES (1, ?, ?, ?)", (clean, boot, horizon))
    finally:
        connection.execute("PRAGMA synchronous=NORMAL")


def _delivery(row: Any) -> Delivery:
    room, epoch, seq, time, name, text, sender, ref = row
    return Delivery(room, text.encode("utf-8"), name, time, seq, epoch, sender, ref)


def _reason(error: sqlite3.Error) -> str:
    text = str(error)
    return "not a SQLite database" if "not a database" in text else text


class SqliteLog:
    durable = True

    def __init__(self, path: str, bootId: Callable[[], str] = bootId) -> None:
        """Take the file for this process, create or upgrade its schema, and record the run;
        L{StoreError} (with a short reason) when any of that cannot be done."""
        self.path = path  # as given, for what is said
        # Where it is, for connecting later: twistd may change directory (--rundir) after
        # makeService and before the first use.
        self._file = os.path.abspath(path)
        self._lockFd = _lock(path)
        self._boot = bootId()
        try:
            connection = _connect(path)
            try:
                _upgrade(connection, path)
                self._horizon = _begin(connection, path, self._boot)
            finally:
                connection.close()
        except sqlite3.Error as e:
            os.close(self._lockFd)
            raise StoreError(f"{path}: {_reason(e)}") from None
        except BaseException:
            os.close(self._lockFd)
            raise
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._closed = False

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise LogError(f"the chat log {self.path} is closed")
        connection = self._connection
        if connection is None or self._pid != os.getpid():
            if connection is not None:
                _forsaken.append(connection)
            try:
                connection = self._connection = _connect(self._file)
            except sqlite3.Error as e:
                raise LogError(f"{self.path}: {_reason(e)}") from None
            self._pid = os.getpid()
        return connection

    def _query(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        try:
            return self._db().execute(sql, tuple(parameters)).fetchall()
        except sqlite3.Error as e:
            raise LogError(str(e)) from None

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """C{work} in one transaction; L{LogError} when it fails, and the connection rolled
        back and fit for the next."""
        db = self._db()
        try:
            db.execute("BEGIN")
            result = work(db)
            db.execute("COMMIT")
            return result
        except sqlite3.Error as e:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise LogError(str(e)) from None

    # -- ChatLog ------------------------------------------------------------------------------

    def heads(self) -> dict[str, Head]:
        rows = self._query(
            "SELECT room, epoch, seq, max(id) FROM streams WHERE id > ? GROUP BY room", (self._horizon,)
        )
        return {room: Head(epoch, seq) for room, epoch, seq, _ in rows}

    def append(self, messages: Sequence[Delivery]) -> None:
        rows = []
        streams: dict[tuple[str, str], int] = {}  # in the order they come: the order they begin
        for m in messages:
            if m.epoch is None or m.seq is None:
                continue
            key = (m.room, m.epoch)
            streams[key] = max(streams.get(key, m.seq), m.seq)
            rows.append((m.room, m.epoch, m.seq, m.time, m.name, m.text.decode("utf-8", "replace"), m.sender, m.ref))
        if not rows:
            return

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO streams (room, epoch, seq) VALUES (?, ?, ?)"
                " ON CONFLICT (room, epoch) DO UPDATE SET seq = max(seq, excluded.seq)",
                [(room, epoch, seq) for (room, epoch), seq in streams.items()],
            )
            db.executemany(_INSERT, rows)

        self._write(write)

    def recent(self, room: str, epoch: str, limit: int) -> list[Delivery]:
        if limit <= 0:
            return []
        rows = self._query(
            f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND epoch = ? ORDER BY seq DESC LIMIT ?",
            (room, epoch, limit),
        )
        return [_delivery(row) for row in reversed(rows)]

    def after(self, room: str, epoch: str, seq: int, limit: int) -> list[Delivery] | None:
        newest = self._query("SELECT seq FROM streams WHERE room = ? AND epoch = ?", (room, epoch))
        if not newest or seq > newest[0][0]:
            return None
        rows = self._query(
            f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
            (room, epoch, seq, max(limit, 0) + 1),
        )
        if len(rows) > limit:
            return None
        ((deleted,),) = self._query(
            "SELECT count(*) FROM deleted WHERE room = ? AND epoch = ? AND seq > ?", (room, epoch, seq)
        )
        if len(rows) + deleted != newest[0][0] - seq:
            return None
        return [_delivery(row) for row in rows]

    def page(self, room: str, before: Head | None, limit: int) -> Page:
        end: int | None = None
        if before is not None:
            at = self._query(
                "SELECT id FROM messages WHERE room = ? AND epoch = ? AND seq >= ? ORDER BY seq LIMIT 1",
                (room, before.epoch, before.seq),
            )
            if at:  # the first message at or after it: the page ends before that
                end = at[0][0]
            else:  # else the last message before it: the page ends with that
                at = self._query(
                    "SELECT id FROM messages WHERE room = ? AND epoch = ? AND seq < ? ORDER BY seq DESC LIMIT 1",
                    (room, before.epoch, before.seq),
                )
                if not at:
                    return Page([], False)
                end = at[0][0] + 1
        limit = max(limit, 0)
        if end is None:
            rows = self._query(
                f"SELECT {_COLUMNS} FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?", (room, limit + 1)
            )
        else:
            rows = self._query(
                f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (room, end, limit + 1),
            )
        return Page([_delivery(row) for row in reversed(rows[:limit])], len(rows) > limit)

    def sent(self, sender: str, ref: str, notBefore: int) -> Head | None:
        rows = self._query(
            "SELECT epoch, seq FROM messages WHERE sender = ? AND ref = ? AND time >= ? ORDER BY id LIMIT 1",
            (sender, ref, notBefore),
        )
        return Head(*rows[0]) if rows else None

    def delete(self, room: str, epoch: str, seq: int) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "DELETE FROM messages WHERE room = ? AND epoch = ? AND seq = ? RETURNING time", (room, epoch, seq)
            ).fetchone()
            if row is None:
                return False
            db.execute("INSERT OR REPLACE INTO deleted VALUES (?, ?, ?, ?)", (room, epoch, seq, row[0]))
            return True

        return bool(self._write(write))

    def setRead(self, identity: str, room: str, position: Head) -> Head:
        def write(db: sqlite3.Connection) -> Head:
            stored = db.execute(
                "SELECT epoch, seq FROM reads WHERE identity = ? AND room = ?", (identity, room)
            ).fetchone()
            if stored is not None:
                if stored[0] == position.epoch:
                    behind = position.seq <= stored[1]
                else:
                    behind = self._rank(db, room, position.epoch) < self._rank(db, room, stored[0])
                if behind:
                    return Head(*stored)
            db.execute(
                "INSERT OR REPLACE INTO reads VALUES (?, ?, ?, ?)", (identity, room, position.epoch, position.seq)
            )
            return Head(position.epoch, position.seq)

        result: Head = self._write(write)
        return result

    @staticmethod
    def _rank(db: sqlite3.Connection, room: str, epoch: str) -> float:
        row = db.execute("SELECT id FROM streams WHERE room = ? AND epoch = ?", (room, epoch)).fetchone()
        return _UNKNOWN if row is None else row[0]

    def read(self, identity: str, room: str) -> Head | None:
        rows = self._query("SELECT epoch, seq FROM reads WHERE identity = ? AND room = ?", (identity, room))
        return Head(*rows[0]) if rows else None

    def prune(self, olderThan: int) -> int:
        def write(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM messages WHERE time < ?", (olderThan,)).rowcount

        result: int = self._write(write)
        return result

    def close(self) -> None:
        """Mark the run as closed cleanly, close the file, and let another txchat have it."""
        if self._closed:
            return
        try:
            if self._connection is not None and self._pid == os.getpid():
                _mark(self._connection, 1, self._boot, self._horizon)
                self._connection.close()
            else:
                if self._connection is not None:
                    _forsaken.append(self._connection)
                connection = _connect(self._file)
                try:
                    _mark(connection, 1, self._boot, self._horizon)
                finally:
                    connection.close()
        except sqlite3.Error as e:
            _log.error("txchat: could not close the chat log {path}: {error}", path=self.path, error=str(e))
        finally:
            self._closed = True
            self._connection = None
            os.close(self._lockFd)
