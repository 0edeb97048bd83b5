"""--store: which log a URL names, the default rule, and the one line when it cannot be opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from txchat.config import Config
from txchat.sqlitelog import SqliteLog
from txchat.stores import (
    MEMORY, POSTGRESQL, SQLITE, CannotOpenStore, StoreURL, checkStoreURL, describeStore, openArchive, openLog,
    parseStoreURL,
)


@pytest.mark.parametrize("url, parsed", [
    ("memory", StoreURL(MEMORY, "")),
    ("sqlite:txchat.sqlite3", StoreURL(SQLITE, "txchat.sqlite3")),
    ("sqlite:/var/lib/txchat/log.sqlite3", StoreURL(SQLITE, "/var/lib/txchat/log.sqlite3")),
    ("sqlite:with:colon", StoreURL(SQLITE, "with:colon")),
    ("postgresql://chat:pw@db.example:5432/chat", StoreURL(POSTGRESQL, "postgresql://chat:pw@db.example:5432/chat")),
    ("postgres://db/chat", StoreURL(POSTGRESQL, "postgres://db/chat")),
])
def test_store_urls(url: str, parsed: StoreURL) -> None:
    assert parseStoreURL(url) == parsed
    assert checkStoreURL(url) == url


@pytest.mark.parametrize("url, reason", [
    ("", "expected sqlite:PATH, postgresql://… or memory, got ''"),
    ("txchat.sqlite3", "expected sqlite:PATH, postgresql://… or memory, got 'txchat.sqlite3'"),
    ("sqlite:", "sqlite:PATH takes a file's path"),
    ("sqlite:///tmp/x", "sqlite:PATH takes a file's path"),
    ("mysql://db", "expected sqlite:PATH"),
    ("postgresql:db", "expected sqlite:PATH"),
    ("postgresql://u:secret@db:port/chat", "Port could not be cast to integer value as 'port': 'postgresql://u:***@db:port/chat'"),
    ("redis://u:secret@host", "got 'redis://u:***@host'"),
])
def test_a_malformed_url_names_the_option_and_hides_a_password(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as e:
        checkStoreURL(url)
    assert str(e.value).startswith("--store: ") and reason in str(e.value)
    assert "secret" not in str(e.value)


def test_the_default_is_a_file_here_for_one_process_and_none_for_a_cluster() -> None:
    assert Config().storeURL == "sqlite:txchat.sqlite3"
    assert Config(redis="redis://localhost").storeURL == "memory"
    assert Config(redis="redis://localhost", store="sqlite:x").storeURL == "sqlite:x"
    assert describeStore(Config()) == "log in txchat.sqlite3"
    assert describeStore(Config(redis="redis://localhost")) == "the chat log is not kept (--store)"
    assert describeStore(Config(store="memory")) == "the chat log is not kept (--store memory)"
    assert describeStore(Config(store="postgresql://u:pw@db/chat")) == "log in postgresql://u:***@db/chat"
    assert describeStore(Config(store="postgresql://u@db/chat?sslmode=require&password=s3cret")) == \
        "log in postgresql://u@db/chat?sslmode=require&password=***"


def test_open_log_opens_what_the_url_names(tmp_path: Path) -> None:
    assert openLog(Config(store="memory")) is None, "nothing kept beyond the rooms' history"
    assert openLog(Config(store="postgresql://db/chat", redis="redis://r")) is None, "a cluster's: openArchive"
    log = openLog(Config(store=f"sqlite:{tmp_path}/chat.sqlite3"))
    assert isinstance(log, SqliteLog) and (tmp_path / "chat.sqlite3").exists()
    # Held: a second start on the same file stops with the one line.
    with pytest.raises(CannotOpenStore) as e:
        openLog(Config(store=f"sqlite:{tmp_path}/chat.sqlite3"))
    assert str(e.value) == (f"twistd txchat: error: --store: {tmp_path}/chat.sqlite3 is in use by another running "
                            f"txchat (it holds {tmp_path}/chat.sqlite3.lock)")
    log.close()


def test_a_store_that_cannot_be_opened_is_one_line_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_text("hello\n" * 100)
    with pytest.raises(CannotOpenStore) as e:
        openLog(Config(store=f"sqlite:{tmp_path}/not-a-db"))
    assert str(e.value) == f"twistd txchat: error: --store: {tmp_path}/not-a-db: not a SQLite database"
    assert isinstance(e.value, SystemExit) and "\n" not in str(e.value)
    with pytest.raises(CannotOpenStore, match="^twistd txchat: error: --store: sqlite: is one process's log; a cluster"):
        openLog(Config(store=f"sqlite:{tmp_path}/chat.sqlite3", redis="redis://r"))
    with pytest.raises(CannotOpenStore, match="^twistd txchat: error: --store: postgresql:// is a cluster's log and "
                                              "goes with --redis"):
        openArchive(Config(store="postgresql://db/chat"), None)
