"""The page in real headless Chromium against real ``twistd -n txchat`` processes.

Selenium drives Debian's chromium through chromium-driver; these tests are plain blocking
tests and never touch the Twisted reactor. Waits are event-driven: a script in the page
resolves when a MutationObserver sees what the test waits for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from websockets.sync.client import connect as wsConnect

from tests.certs import makeCertificate
from tests.processes import Twistd

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("TXCHAT_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))

WAIT_FOR_ENTRIES = """
const [count, done] = [arguments[0], arguments[arguments.length - 1]];
const log = document.getElementById("log");
const entries = () => Array.from(log.children).map(e => e.textContent);
const observer = new MutationObserver(() => {
  if (log.children.length >= count) { observer.disconnect(); done(entries()); }
});
if (log.children.length >= count) { done(entries()); } else { observer.observe(log, {childList: true}); }
"""

WAIT_FOR_STATE = """
const [state, done] = [arguments[0], arguments[arguments.length - 1]];
const status = document.getElementById("status");
const observer = new MutationObserver(() => {
  if (status.dataset.state === state) { observer.disconnect(); done(state); }
});
if (status.dataset.state === state) { done(state); } else { observer.observe(status, {attributes: true}); }
"""

TRY_SOCKET = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
const ws = new WebSocket(url);
ws.onopen = () => { ws.close(); done("open"); };
ws.onerror = () => done("refused");
"""


def makeBrowser(profile: Path, *extra: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,800", *extra,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(15)
    return driver


class Page:
    """One browser tab on the chat page."""

    def __init__(self, driver: webdriver.Chrome, url: str) -> None:
        self.driver = driver
        driver.get(url)
        self.waitForState("open")

    def waitForState(self, state: str) -> None:
        self.driver.execute_async_script(WAIT_FOR_STATE, state)

    def entries(self, atLeast: int = 0) -> list[str]:
        return self.driver.execute_async_script(WAIT_FOR_ENTRIES, atLeast)

    @property
    def input(self):
        return self.driver.find_element(By.ID, "msg")

    def type(self, text: str) -> None:
        self.input.send_keys(text, Keys.ENTER)


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> Iterator[Twistd]:
    server = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--rate-limit", "0", cwd=tmp_path_factory.mktemp("chat"))
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
def pages(chat, browsers) -> tuple[Page, Page]:
    url = f"http://127.0.0.1:{chat.port}/"
    return Page(browsers[0], url), Page(browsers[1], url)


def test_typed_text_appears_once_in_both_logs_and_input_clears(pages):
    a, b = pages
    a.type("hello from page a")
    assert a.entries(1) == ["hello from page a"]
    assert b.entries(1) == ["hello from page a"]
    assert a.input.get_attribute("value") == ""
    a.input.send_keys("sent with the button")
    a.driver.find_element(By.ID, "send").click()
    assert b.entries(2) == ["hello from page a", "sent with the button"]
    assert a.entries(2) == ["hello from page a", "sent with the button"]
    assert a.input.get_attribute("value") == ""


def test_the_page_has_its_own_icon_and_the_console_stays_clean(chat, tmp_path):
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
    assert len(icons) == 1 and icons[0].startswith("data:image/svg+xml,")


def test_a_room_page_chats_in_its_room_only(chat, browsers):
    a, b = browsers
    inRoom = Page(a, f"http://127.0.0.1:{chat.port}/room/garden")
    inLobby = Page(b, f"http://127.0.0.1:{chat.port}/")
    inRoom.type("in the garden")
    assert inRoom.entries(1) == ["in the garden"]
    inLobby.type("in the lobby")
    assert inLobby.entries(1) == ["in the lobby"], "the lobby did not get the garden's message"
    assert inRoom.entries(1) == ["in the garden"]


def test_markup_is_shown_as_text_and_never_run(pages):
    a, b = pages
    markup = '<b>x</b><img src=x onerror="window.pwned=1">'
    a.type(markup)
    for page in (a, b):
        assert page.entries(1) == [markup]
        assert page.driver.find_elements(By.CSS_SELECTOR, "#log img, #log div b") == []
        assert page.driver.execute_script("return window.pwned") is None


def test_burst_of_100_arrives_as_100_entries_in_order(chat, pages):
    a, _ = pages
    sent = [f"burst {i}" for i in range(100)]
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws") as client:
        for message in sent:
            client.send(message)
        received = []
        while len(received) < 100:
            received += client.recv(timeout=10).split("\n")
    assert received == sent
    assert a.entries(100) == sent


def test_log_follows_new_entries_only_when_scrolled_to_the_bottom(chat, pages):
    a, _ = pages
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws") as client:
        for i in range(200):
            client.send(f"filler {i}")
        a.entries(200)
        geometry = "const l = document.getElementById('log'); return [l.scrollTop, l.scrollHeight, l.clientHeight];"
        top, height, visible = a.driver.execute_script(geometry)
        assert height > visible, "the log should have overflowed"
        assert top == pytest.approx(height - visible, abs=2), "at the bottom, new entries scroll into view"
        client.send("one more")
        a.entries(201)
        top, height, visible = a.driver.execute_script(geometry)
        assert top == pytest.approx(height - visible, abs=2)
        a.driver.execute_script("document.getElementById('log').scrollTop = 100;")
        client.send("while reading above")
        a.entries(202)
        top, height, _ = a.driver.execute_script(geometry)
        assert top == 100, "a reader who scrolled up keeps the place"


def test_empty_input_sends_nothing(pages):
    a, b = pages
    a.input.send_keys(Keys.ENTER)
    a.driver.find_element(By.ID, "send").click()
    a.type("marker after two empty submits")
    assert b.entries(1) == ["marker after two empty submits"]
    assert a.entries(1) == ["marker after two empty submits"]


def test_page_without_websocket_support_says_so(chat, tmp_path):
    driver = makeBrowser(tmp_path / "profile")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebSocket;"})
        driver.get(f"http://127.0.0.1:{chat.port}/")
        assert driver.execute_async_script(WAIT_FOR_ENTRIES, 1) == ["Your browser does not support WebSockets."]
        assert driver.find_element(By.CSS_SELECTOR, "#log b").text == "Your browser does not support WebSockets."
    finally:
        driver.quit()


def test_stopping_the_server_shows_connection_closed_in_bold(browsers, tmp_path):
    server = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    try:
        page = Page(browsers[0], f"http://127.0.0.1:{server.port}/")
    finally:
        server.stop()
    page.waitForState("closed")
    assert page.entries(1) == ["Connection closed."]
    assert page.driver.find_element(By.CSS_SELECTOR, "#log b").text == "Connection closed."
    assert "code 1001" in server.log  # the page answered the going-away close


def test_https_page_chats_over_wss(tmp_path):
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
        assert pageB.entries(1) == ["secure hello"]
        assert pageA.entries(1) == ["secure hello"]
    finally:
        a.quit()
        b.quit()
        server.stop()
    assert "connect 127.0.0.1:" in server.log


def test_foreign_origin_cannot_open_the_socket_unless_allowed(browsers, tmp_path):
    other = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    otherOrigin = f"http://127.0.0.1:{other.port}"
    strict = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    friendly = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--allowed-origin", otherOrigin, cwd=tmp_path)
    driver = browsers[0]
    try:
        driver.get(otherOrigin + "/")
        driver.get_log("browser")  # start from an empty console
        assert driver.execute_async_script(TRY_SOCKET, f"ws://127.0.0.1:{strict.port}/ws") == "refused"
        console = " ".join(entry["message"] for entry in driver.get_log("browser"))
        assert "403" in console
        assert driver.execute_async_script(TRY_SOCKET, f"ws://127.0.0.1:{friendly.port}/ws") == "open"
    finally:
        for server in (other, strict, friendly):
            server.stop()
    assert f"origin {otherOrigin} is not allowed" in strict.log


def test_screenshots_desktop_and_phone(chat, browsers):
    driver = browsers[0]
    page = Page(driver, f"http://127.0.0.1:{chat.port}/")
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws") as client:
        for line in ["Hi there!", "Welcome to txchat.", "Messages show up here, newest at the bottom.",
                     "A long line wraps nicely: " + "lorem ipsum dolor sit amet " * 6]:
            client.send(line)
        page.entries(4)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1280, 800)
    assert driver.save_screenshot(str(ARTIFACTS / "page-desktop.png"))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
    )
    try:
        assert driver.save_screenshot(str(ARTIFACTS / "page-phone.png"))
        # On a phone the input row stays inside the viewport, below the log.
        form = driver.find_element(By.ID, "form").rect
        log = driver.find_element(By.ID, "log").rect
        assert form["y"] + form["height"] <= 844 + 1 and log["y"] + log["height"] <= form["y"] + 1
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
