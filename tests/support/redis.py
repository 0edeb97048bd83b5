"""A real redis-server for a test (L{bench.redisserver}), started and stopped off the reactor's
thread so that a pytest-twisted test keeps its reactor turning meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest_twisted
from twisted.internet.threads import deferToThread

from bench.redisserver import RedisServer


@pytest_twisted.async_yield_fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await deferToThread(server.start)
    yield server
    await deferToThread(server.stop)
