"""The page's answer says whether the chat needs sign-in: the page cannot see why a WebSocket
handshake failed, so it asks with a HEAD of itself (web/home.html, needsSignIn)."""

from __future__ import annotations

from typing import cast

import pytest
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from txchat.webapp import SIGN_IN_HEADER, Page, pagePath


def answer(page: Page, method: bytes) -> DummyRequest:
    request = DummyRequest([b""])
    request.method = method
    page.render(cast(Request, request))
    return request


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_a_chat_that_needs_sign_in_says_so_on_its_page(method: bytes) -> None:
    request = answer(Page(pagePath(), signIn=True), method)
    assert request.responseCode in (None, 200)
    assert request.responseHeaders.getRawHeaders(SIGN_IN_HEADER) == [b"required"]


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_an_open_chat_says_nothing_of_sign_in(method: bytes) -> None:
    request = answer(Page(pagePath()), method)
    assert request.responseCode in (None, 200)
    assert request.responseHeaders.getRawHeaders(SIGN_IN_HEADER) is None


def test_the_page_reads_the_header_the_server_sets() -> None:
    with open(pagePath(), encoding="utf-8") as page:
        assert f'headers.get("{SIGN_IN_HEADER.decode()}") === "required"' in page.read()
