"""The page's first duties, the gorilla chat's (README "The page"), in real headless Chromium
against a real ``twistd -n txchat``: every test chats in a room of its own, so the history one
test leaves never shows in another."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from websockets.sync.client import connect as wsConnect

from bench.processes import Twistd
from tests.support.browser import Browsers, Page, TRY_SOCKET, makeBrowser
from tests.support.certs import makeCertificate


# The first message text in view in the log, its offset from the log's top, and the log's length.
FIRST_IN_VIEW = """
function firstInView() {
  const log = document.getElementById('log');
  const top = log.getBoundingClientRect().top;
  const text = Array.from(log.querySelectorAll('.msg > .text')).find((t) => t.getBoundingClientRect().bottom > top);
  return {text: text.textContent, offset: text.getBoundingClientRect().top - top, height: log.scrollHeight};
}
"""


@pytest.fixture
def pages(chat: Twistd, browsers: Browsers, room: str) -> tuple[Page, Page]:
    url = f"http://127.0.0.1:{chat.port}/room/{room}"
    return Page(browsers[0], url), Page(browsers[1], url)


def test_typed_text_appears_once_in_both_logs_and_input_clears(pages: tuple[Page, Page]) -> None:
    a, b = pages
    a.type("hello from page a")
    assert a.texts(1) == ["hello from page a"]
    assert b.texts(1) == ["hello from page a"]
    assert a.input.get_attribute("value") == ""
    a.input.send_keys("sent with the button")
    a.element("send").click()
    assert b.texts(2) == ["hello from page a", "sent with the button"]
    assert a.texts(2) == ["hello from page a", "sent with the button"]
    assert a.input.get_attribute("value") == ""


def test_the_page_has_its_own_icon_and_the_console_stays_clean(chat: Twistd, tmp_path: Path) -> None:
    driver = makeBrowser(tmp_path / "profile")
    try:
        mark = len(chat.lines)
        Page(driver, f"http://127.0.0.1:{chat.port}/")
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        icons = [e.get_attribute("href") for e in driver.find_elements(By.CSS_SELECTOR, "link[rel=icon]")]
    finally:
        driver.quit()
    assert errors == [], errors
    assert "favicon" not in "".join(chat.lines[mark:])
    assert len(icons) == 1 and (icons[0] or "").startswith("data:image/svg+xml,")


def test_the_root_page_is_the_lobby_and_speaks_to_plain_clients_there(chat: Twistd, browsers: Browsers) -> None:
    page = Page(browsers[0], f"http://127.0.0.1:{chat.port}/")
    assert page.element("room").text == "lobby"
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws") as plain:
        page.say("lobby hello from the page")
        assert plain.recv(timeout=10) == "lobby hello from the page"
        plain.send("lobby hello from a plain client")
        page.waitForText("lobby hello from a plain client")


def test_markup_is_shown_as_text_and_never_run(pages: tuple[Page, Page]) -> None:
    a, b = pages
    markup = '<b>x</b><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    a.type(markup)
    for page in (a, b):
        assert page.texts(1) == [markup]
        assert page.driver.find_elements(By.CSS_SELECTOR, "#log img, #log script, #log .text b") == []
        assert page.driver.execute_script("return window.pwned") is None


def test_burst_of_100_arrives_as_100_entries_in_order(chat: Twistd, pages: tuple[Page, Page], room: str) -> None:
    a, _ = pages
    sent = [f"burst {i}" for i in range(100)]
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}") as client:
        for message in sent:
            client.send(message)
        received: list[str] = []
        while len(received) < 100:
            received += cast(str, client.recv(timeout=10)).split("\n")
    assert received == sent
    assert a.texts(100) == sent


def test_log_follows_new_entries_only_when_scrolled_to_the_bottom(chat: Twistd, pages: tuple[Page, Page],
                                                                  room: str) -> None:
    a, _ = pages
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}") as client:
        for i in range(200):
            client.send(f"filler {i}")
        a.texts(200)
        geometry = "const l = document.getElementById('log'); return [l.scrollTop, l.scrollHeight, l.clientHeight];"
        top, height, visible = a.driver.execute_script(geometry)
        assert height > visible, "the log should have overflowed"
        assert top == pytest.approx(height - visible, abs=2), "at the bottom, new entries scroll into view"
        client.send("one more")
        a.texts(201)
        top, height, visible = a.driver.execute_script(geometry)
        assert top == pytest.approx(height - visible, abs=2)
        a.driver.execute_script("document.getElementById('log').scrollTop = 100;")
        client.send("while reading above")
        a.texts(202)
        top, height, _ = a.driver.execute_script(geometry)
        assert top == 100, "a reader who scrolled up keeps the place"


def test_a_log_made_smaller_keeps_the_end_in_view_and_a_reader_above_is_not_dragged_to_it(
        pages: tuple[Page, Page], chat: Twistd, room: str) -> None:
    """A phone turned, its keyboard opening, a window narrowed: the end stays in view for a
    reader at it (the browser lays the log out anew, at times scrolled to its top); a reader
    reading above is not dragged down to it."""
    a, _ = pages
    end = "log.scrollTop + log.clientHeight >= log.scrollHeight - 2"
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}") as client:
        for i in range(200):
            client.send(f"filler {i} " + "and more words to wrap " * (i % 4))
        a.texts(200)
        a.waitUntil(end)
        try:
            for width, height in ((700, 500), (390, 420), (320, 300)):
                a.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
                a.waitUntil(f"log.getBoundingClientRect().width <= {width}")
                a.waitUntil(end)
            a.driver.execute_script("document.getElementById('log').scrollTop = 200;")
            a.waitUntil("!log.classList.contains('following')")  # reading above
            reading = a.driver.execute_script(FIRST_IN_VIEW + "return firstInView();")
            a.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                     {"width": 390, "height": 420, "deviceScaleFactor": 1, "mobile": False})
            a.waitUntil("log.getBoundingClientRect().width > 320")
            # The text the reader was at is still the first in view, where it was, though
            # everything above it was laid out anew, shorter.
            now = a.driver.execute_async_script(  # the page's ResizeObserver has answered by then
                FIRST_IN_VIEW + "const done = arguments[arguments.length - 1];"
                "requestAnimationFrame(() => requestAnimationFrame(() => done(firstInView())));")
            assert now["height"] < reading["height"], "the wider log should be shorter"
            assert now["text"] == reading["text"]
            assert now["offset"] == pytest.approx(reading["offset"], abs=2)
            client.send("while reading above")
            a.texts(201)
            assert not a.driver.execute_script(f"const log = document.getElementById('log'); return {end};")
            assert a.driver.execute_script("return document.getElementById('log').scrollTop") < 1000
        finally:
            a.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_writing_several_lines_keeps_the_log_following_its_end(pages: tuple[Page, Page], chat: Twistd,
                                                               room: str) -> None:
    """The input grows a line at a time and the log shrinks with it; the log keeps its end in
    view, and still follows the messages that arrive while the reader writes."""
    a, _ = pages
    end = "log.scrollTop + log.clientHeight >= log.scrollHeight - 2"
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}") as client:
        for i in range(200):
            client.send(f"filler {i}")
        a.texts(200)
        a.waitUntil(end)
        a.input.send_keys("one", Keys.SHIFT, Keys.ENTER, Keys.NULL)
        a.waitUntil(end)  # the input grew a line; the log followed its end
        a.input.send_keys("two")  # a keystroke apart: measuring the input moves the log
        client.send("arrives while writing")
        a.texts(201)
        a.waitUntil(end)
        assert a.driver.execute_script("return document.getElementById('log').classList.contains('following')")


def test_empty_input_sends_nothing(pages: tuple[Page, Page]) -> None:
    a, b = pages
    a.input.send_keys(Keys.ENTER)
    assert a.element("send").get_attribute("disabled") == "true", "nothing to send"
    a.type("marker after an empty submit")
    assert b.texts(1) == ["marker after an empty submit"]
    assert a.texts(1) == ["marker after an empty submit"]


def test_page_without_websocket_support_says_so(chat: Twistd, tmp_path: Path) -> None:
    driver = makeBrowser(tmp_path / "profile")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebSocket;"})
        page = Page(driver, f"http://127.0.0.1:{chat.port}/", name=None)
        assert page.texts(1) == ["Your browser does not support WebSockets."]
        assert driver.find_element(By.CSS_SELECTOR, "#log b").text == "Your browser does not support WebSockets."
    finally:
        driver.quit()


def test_stopping_the_server_shows_connection_closed_in_bold_with_its_reason(browsers: Browsers,
                                                                             tmp_path: Path) -> None:
    server = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    try:
        page = Page(browsers[0], f"http://127.0.0.1:{server.port}/")
    finally:
        server.stop()
    page.waitForState("closed")
    assert page.texts(1) == ["Connection closed. server shutting down"]
    assert page.driver.find_element(By.CSS_SELECTOR, "#log b").text == "Connection closed."
    assert page.element("send").get_attribute("disabled") == "true"
    assert "code 1001" in server.log  # the page answered the going-away close


def test_https_page_chats_over_wss(tmp_path: Path) -> None:
    keyPath, certPath = makeCertificate(tmp_path)
    server = Twistd(
        "--listen", f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}", cwd=tmp_path
    )
    a = makeBrowser(tmp_path / "profile-a", "--ignore-certificate-errors")
    b = makeBrowser(tmp_path / "profile-b", "--ignore-certificate-errors")
    try:
        url = f"https://127.0.0.1:{server.port}/"
        pageA, pageB = Page(a, url), Page(b, url)
        assert a.execute_script("return location.protocol") == "https:"
        pageA.type("secure hello")
        assert pageB.texts(1) == ["secure hello"]
        assert pageA.texts(1) == ["secure hello"]
    finally:
        a.quit()
        b.quit()
        server.stop()
    assert "connect 127.0.0.1:" in server.log


def test_foreign_origin_cannot_open_the_socket_unless_allowed(browsers: Browsers, tmp_path: Path) -> None:
    # Three processes in one directory: each keeps no log of its own (one SQLite file has one owner).
    other = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--store", "memory", cwd=tmp_path)
    otherOrigin = f"http://127.0.0.1:{other.port}"
    strict = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--store", "memory", cwd=tmp_path)
    friendly = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--store", "memory", "--allowed-origin", otherOrigin,
                      cwd=tmp_path)
    driver = browsers[0]
    try:
        Page(driver, otherOrigin + "/")
        driver.get_log("browser")  # start from an empty console
        assert driver.execute_async_script(TRY_SOCKET, f"ws://127.0.0.1:{strict.port}/ws") == "refused"
        console = " ".join(entry["message"] for entry in driver.get_log("browser"))
        assert "403" in console
        assert driver.execute_async_script(TRY_SOCKET, f"ws://127.0.0.1:{friendly.port}/ws") == "open"
    finally:
        for server in (other, strict, friendly):
            server.stop()
    assert f"origin {otherOrigin} is not allowed" in strict.log
