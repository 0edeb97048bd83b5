"""The SQLite log's own behaviour: what survives a restart, the power-loss rule, one txchat per
file, and the errors that stop start-up or that the broker goes on past."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from txchat import sqlitelog
from txchat.chatlog import Head, LogError, StoreError
from txchat.sqlitelog import SqliteLog
from tests.support.chatlogs import message

ROOT = Path(__file__).resolve().parents[2]


def opened(path: Path, boot: str = "boot-1") -> SqliteLog:
    return SqliteLog(str(path), bootId=lambda: boot)


def dieAfterWriting(path: Path, boot: str, *rooms: str) -> None:
    """Another process opens the log, writes a message in each room's stream E1 and ends
    without closing it, as a SIGKILL would end it."""
    code = (
        "import os, sys\n"
        "from txchat.sqlitelog import SqliteLog\n"
        "from tests.support.chatlogs import message\n"
        f"log = SqliteLog({str(path)!r}, bootId=lambda: {boot!r})\n"
        f"log.append([message(room, 'E1', 1) for room in {list(rooms)!r}])\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_a_new_file_gets_the_schema_in_wal_mode(tmp_path: Path) -> None:
    opened(tmp_path / "log.sqlite3").close()
    db = sqlite3.connect(tmp_path / "log.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(sqlitelog.VERSION,)] == [(1,)]
    assert db.execute("SELECT clean, boot FROM run").fetchone() == (1, "boot-1")
    db.close()


def test_rooms_go_on_after_a_clean_close_and_reopen(tmp_path: Path) -> None:
    log = opened(tmp_path / "log.sqlite3")
    log.append([message("r", "A", 1), message("r", "A", 2), message("s", "B", 5)])
    log.setRead("u:ada", "r", Head("A", 2))
    log.close()
    log = opened(tmp_path / "log.sqlite3", boot="another boot")  # a reboot after a clean stop
    assert log.heads() == {"r": Head("A", 2), "s": Head("B", 5)}
    assert [m.seq for m in log.page("r", None, 10).messages] == [1, 2]
    assert log.read("u:ada", "r") == Head("A", 2)
    log.close()


def test_rooms_go_on_when_the_process_died_and_the_machine_did_not(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    dieAfterWriting(path, "boot-1", "r")
    log = opened(path, boot="boot-1")
    assert log.heads() == {"r": Head("E1", 1)}
    assert [m.text for m in log.recent("r", "E1", 5)] == [b"r E1 1"], "the WAL kept it"
    log.close()


@pytest.mark.parametrize("boot", ["boot-2", ""])
def test_rooms_begin_a_new_epoch_when_the_machine_went_down_with_the_log_open(tmp_path: Path, boot: str) -> None:
    path = tmp_path / "log.sqlite3"
    dieAfterWriting(path, "boot-1" if boot else "", "r", "s")
    log = opened(path, boot=boot or "")  # a boot id the system does not give: any unclean stop counts
    assert log.heads() == {}, "no room may go on: numbers handed out may be lost"
    assert [m.seq for m in log.page("r", None, 10).messages] == [1], "what is there stays"
    log.append([message("r", "E2", 1)])
    log.close()
    # The new epoch goes on; the room that wrote nothing since stays out, even after this
    # run too dies on the same boot.
    log = opened(path, boot=boot)
    assert log.heads() == {"r": Head("E2", 1)}
    log.close()
    dieAfterWriting(path, boot, "t")
    log = opened(path, boot=boot)
    # Without a boot id, every unclean stop may have been the machine's.
    assert log.heads() == ({"r": Head("E2", 1), "t": Head("E1", 1)} if boot else {})
    log.close()


def test_a_second_opener_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    first = opened(path)
    with pytest.raises(StoreError, match=r"log\.sqlite3 is in use by another running txchat"):
        opened(path)
    first.append([message("r", "A", 1)])  # the first is unharmed
    first.close()
    second = opened(path)
    assert second.heads() == {"r": Head("A", 1)}
    second.close()


def test_a_file_that_is_not_sqlite_is_refused_with_a_short_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database, and they are long enough to have a header\n" * 20)
    with pytest.raises(StoreError) as e:
        opened(path)
    assert str(e.value) == f"{path}: not a SQLite database"
    assert path.read_text().startswith("these are my notes"), "left as it was"
    opened(tmp_path / "log.sqlite3").close()  # and the lock was let go: nothing leaks


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE accounts (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="a SQLite database, but not a txchat log"):
        opened(path)


def test_a_log_from_a_newer_txchat_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    opened(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"made by a newer txchat \(schema version 99; this one knows 1\)"):
        opened(path)


def test_a_missing_directory_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"No such file or directory \(.*missing/log\.sqlite3\.lock\)"):
        opened(tmp_path / "missing" / "log.sqlite3")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match="unable to open database file"):
        opened(tmp_path / "dir")


def test_an_older_schema_is_upgraded_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.sqlite3"
    log = opened(path)
    log.append([message("r", "A", 1)])
    log.close()
    monkeypatch.setattr(sqlitelog, "_STEPS", [*sqlitelog._STEPS, ["ALTER TABLE messages ADD COLUMN edited INTEGER"]])
    monkeypatch.setattr(sqlitelog, "VERSION", 2)
    log = opened(path)
    assert log.heads() == {"r": Head("A", 1)}
    log.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchone() == (2,)
    assert db.execute("SELECT seq, edited FROM messages").fetchall() == [(1, None)]
    db.close()


def test_a_write_that_fails_raises_log_error_and_the_next_one_works(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = opened(path)
    log.append([message("r", "A", 1)])
    other = sqlite3.connect(path, isolation_level=None)  # e.g. a person's sqlite3 shell, writing
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(LogError, match="database is locked"):
        log.append([message("r", "A", 2)])
    with pytest.raises(LogError):
        log.setRead("u:ada", "r", Head("A", 1))
    assert [m.seq for m in log.page("r", None, 10).messages] == [1], "reads go on"
    other.execute("ROLLBACK")
    other.close()
    log.append([message("r", "A", 2), message("r", "A", 3)])
    assert log.heads() == {"r": Head("A", 3)}
    log.close()


def test_a_closed_log_raises_log_error(tmp_path: Path) -> None:
    log = opened(tmp_path / "log.sqlite3")
    log.close()
    log.close()  # twice is fine
    with pytest.raises(LogError, match="is closed"):
        log.append([message("r", "A", 1)])
    with pytest.raises(LogError):
        log.heads()


def test_the_indexes_serve_each_question(tmp_path: Path) -> None:
    log = opened(tmp_path / "log.sqlite3")
    log.close()
    db = sqlite3.connect(tmp_path / "log.sqlite3")

    def plan(sql: str, *parameters: object) -> str:
        return " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, parameters))

    assert "messages_by_room (room=? AND rowid<?)" in plan(
        "SELECT * FROM messages WHERE room = ? AND id < ? ORDER BY id DESC LIMIT 51", "r", 9)
    assert "sqlite_autoindex_messages_1 (room=? AND epoch=? AND seq>?)" in plan(
        "SELECT * FROM messages WHERE room = ? AND epoch = ? AND seq > ? ORDER BY seq", "r", "A", 1)
    assert "messages_by_send (sender=? AND ref=?)" in plan(
        "SELECT epoch, seq FROM messages WHERE sender = ? AND ref = ? AND time >= ? ORDER BY id LIMIT 1", "a", "x", 0)
    assert "messages_by_time (time<?)" in plan("DELETE FROM messages WHERE time < ?", 5)
    db.close()


def test_a_log_used_before_a_fork_is_used_by_the_child_with_its_own_connection(tmp_path: Path) -> None:
    # twistd daemonises after makeService: a connection must not cross the fork.
    log = opened(tmp_path / "log.sqlite3")
    log.append([message("r", "A", 1)])  # a connection, opened before the fork
    inherited = log._connection
    assert inherited is not None
    child = os.fork()
    if child == 0:  # the child's outcome is its exit status; it never returns to pytest
        code = 1
        try:
            log.append([message("r", "A", 2)])
            code = 0 if [m.seq for m in log.page("r", None, 5).messages] == [1, 2] else 2
            if log._connection is inherited or inherited not in sqlitelog._forsaken:
                code = 3  # the child used the parent's connection, or would close it
            log.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    db = sqlite3.connect(tmp_path / "log.sqlite3")
    assert db.execute("SELECT seq FROM messages ORDER BY id").fetchall() == [(1,), (2,)]
    assert db.execute("SELECT clean FROM run").fetchone() == (1,)
    db.close()
    log.close()


def test_a_relative_path_stays_where_it_was_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # twistd --rundir changes directory after makeService has opened the log.
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path)
    log = SqliteLog("log.sqlite3", bootId=lambda: "boot-1")
    monkeypatch.chdir(tmp_path / "run")
    log.append([message("r", "A", 1)])
    log.close()
    assert not (tmp_path / "run" / "log.sqlite3").exists()
    again = opened(tmp_path / "log.sqlite3")
    assert again.heads() == {"r": Head("A", 1)}
    again.close()
