from __future__ import annotations

from typing import Iterator

import pytest
from selenium import webdriver
from twisted.internet import reactor

from tests.browser import makeBrowser
from tests.processes import Twistd


def _isWaker(selectable: object) -> bool:
    # The reactor adds its own wakers (signals, threads) when it first runs.
    return "Waker" in type(selectable).__name__


@pytest.fixture(autouse=True)
def cleanReactor() -> Iterator[None]:
    """pytest-twisted does not check for a dirty reactor: fail a test that leaves timers,
    connections or listening ports behind."""
    readers, writers = set(reactor.getReaders()), set(reactor.getWriters())
    calls = set(reactor.getDelayedCalls())
    yield
    leftCalls = [c for c in reactor.getDelayedCalls() if c not in calls and c.active()]
    leftReaders = [r for r in reactor.getReaders() if r not in readers and not _isWaker(r)]
    leftWriters = [w for w in reactor.getWriters() if w not in writers and not _isWaker(w)]
    described = [f"{c!r} on {getattr(c.func, '__self__', None)!r}" for c in leftCalls]
    for call in leftCalls:
        call.cancel()
    for selectable in {*leftReaders, *leftWriters}:
        reactor.removeReader(selectable)
        reactor.removeWriter(selectable)
    assert not leftCalls, f"test left delayed calls behind: {described}"
    assert not leftReaders and not leftWriters, f"test left connections behind: {leftReaders + leftWriters}"


# For the browser tests: one txchat and two browsers per module; each test chats in a room
# named after it, so the history one test leaves never shows in another.

@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> Iterator[Twistd]:
    server = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path_factory.mktemp("chat"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browsers(tmp_path_factory) -> Iterator[tuple[webdriver.Chrome, webdriver.Chrome]]:
    a = makeBrowser(tmp_path_factory.mktemp("profile-a"))
    b = makeBrowser(tmp_path_factory.mktemp("profile-b"))
    yield a, b
    a.quit()
    b.quit()


@pytest.fixture
def room(request) -> str:
    return request.node.name.removeprefix("test_")[:48]
