"""The chat log in PostgreSQL: what needs no server (against a real one: tests/live/test_pglog.py)."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from txchat.chatlog import LogError
from txchat.pglog import PostgresLog, reason


@pytest.mark.parametrize("said, short", [
    ('connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
     'authentication failed for user "txchat"', 'password authentication failed for user "txchat"'),
    ('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
     '\tIs the server running on that host and accepting TCP/IP connections?', "Connection refused"),
    ("Multiple connection attempts failed. All failures were:\n- host: 'localhost', port: '1', hostaddr: '::1': "
     "connection failed: connection to server at \"::1\", port 1 failed: Connection refused\n\tIs the server "
     "running on that host and accepting TCP/IP connections?\n- host: 'localhost', port: '1', hostaddr: "
     "'127.0.0.1': connection failed: connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
     "Connection refused"),
    ('connection failed: connection to server at "10.9.9.9", port 5432 failed: timeout expired', "timeout expired"),
    ("consuming input failed: server closed the connection unexpectedly", "server closed the connection unexpectedly"),
    ("", "OperationalError"),
])
def test_reason_is_libpqs_words_without_the_address(said: str, short: str) -> None:
    import psycopg

    assert reason(psycopg.OperationalError(said)) == short


def test_a_url_that_is_not_one_is_refused_before_any_connection() -> None:
    for bad in ("nonsense", "postgresql://h/db?bogus=1"):
        with pytest.raises(LogError, match="not a PostgreSQL URL"):
            PostgresLog(bad, MemoryReactorClock())
    log = PostgresLog("postgresql://u:p@db.example:6543/chat", MemoryReactorClock())
    assert log.where == "db.example:6543" and log.durable
