"""PostgreSQL for the tests: one throwaway server per test module (L{bench.postgresserver}),
a new database for each test."""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

from bench.postgresserver import PostgresServer

_databases = itertools.count(1)


@pytest.fixture(scope="module")
def postgresServer() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def postgresURL(postgresServer: PostgresServer) -> str:
    """The URL of a new, empty database on the module's server."""
    return postgresServer.database(f"test{next(_databases)}")
