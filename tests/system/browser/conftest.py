"""One txchat and two browsers per module; each test chats in a room named after it, so the
history one test leaves never shows in another."""

from __future__ import annotations

from typing import Iterator

import pytest

from bench.processes import Twistd
from tests.support.browser import Browsers, makeBrowser


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twistd]:
    server = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path_factory.mktemp("chat"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browsers]:
    a = makeBrowser(tmp_path_factory.mktemp("profile-a"))
    b = makeBrowser(tmp_path_factory.mktemp("profile-b"))
    yield a, b
    a.quit()
    b.quit()


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    return request.node.name.removeprefix("test_")[:48]
