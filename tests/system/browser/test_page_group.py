"""The page for a group (SPEC §19), in real headless Chromium against a real
``twistd -n txchat``: naming oneself with Enter, multi-line messages, people told apart, what
people send shown safely, the layout on a phone, sign-in, days, unread. Every test chats in a
room of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, cast

import jwt
import pytest
from selenium import webdriver
from selenium.webdriver.common.keys import Keys
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from bench.processes import Twistd
from tests.support.browser import ARTIFACTS, Browsers, Page, makeBrowser
from tests.support.relay import Relay

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}

# Counts the WebSockets the page opens (set before the page's own script runs).
COUNT_SOCKETS = """
window.socketsOpened = 0;
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); window.socketsOpened++; }
};
"""

# Moves the time of the message lines whose text starts with "N days ago:" N days back: the
# server stamps every message now, and day separators need other days.
SHIFT_DAYS = """
const Native = window.WebSocket;
const shift = data => data.split("\\n").map(line => {
  try {
    const m = JSON.parse(line);
    const found = m.type === "message" && /^(\\d+) days ago:/.exec(m.text);
    if (found) { m.time -= Number(found[1]) * 86400000; return JSON.stringify(m); }
  } catch (e) {}
  return line;
}).join("\\n");
window.WebSocket = class extends Native {
  set onmessage(handler) { super.onmessage = event => handler({data: shift(event.data)}); }
};
"""

# Resolves after some milliseconds: how a test gives the page time to do what it must not.
WAIT_MS = "const done = arguments[arguments.length - 1]; setTimeout(done, arguments[0]);"


@pytest.fixture
def roomUrl(chat: Twistd, room: str) -> str:
    return f"http://127.0.0.1:{chat.port}/room/{room}"


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A browser on a profile of its own: a first visit."""
    driver = makeBrowser(tmp_path / "profile")
    yield driver
    driver.quit()


def beforeScripts(driver: webdriver.Chrome, *sources: str) -> None:
    for source in sources:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})


def client(chat: Twistd, room: str, query: str = "", subprotocol: str | None = "txchat.v1") -> ClientConnection:
    protocols = [Subprotocol(subprotocol)] if subprotocol else None
    return wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}{query}", subprotocols=protocols)


def linesFrom(connection: ClientConnection, until: str) -> list[dict[str, Any]]:
    """JSON lines until a message with text C{until}."""
    lines: list[dict[str, Any]] = []
    while not any(line.get("text") == until for line in lines):
        lines += [json.loads(line) for line in cast(str, connection.recv(timeout=10)).split("\n")]
    return lines


def plainUntil(connection: ClientConnection, until: str) -> list[str]:
    lines: list[str] = []
    while until not in lines:
        lines += cast(str, connection.recv(timeout=10)).split("\n")
    return lines


def messages(page: Page) -> list[dict[str, Any]]:
    return [e for e in page.entries() if e["kind"] == "message"]


def test_a_first_visitor_types_a_name_and_enter_and_is_named(fresh: webdriver.Chrome, roomUrl: str) -> None:
    page = Page(fresh, roomUrl, name=None)
    assert page.element("name-dialog").get_attribute("open") is not None
    assert fresh.switch_to.active_element == page.element("name-input"), "the name field has the focus"
    page.element("name-input").send_keys("Zoe", Keys.ENTER)
    page.waitForState("open")
    assert page.element("name-dialog").get_attribute("open") is None
    assert fresh.execute_script("return localStorage.getItem('txchat.name')") == "Zoe"
    assert page.element("name-button").text == "Name: Zoe"
    page.say("hello, I am Zoe")
    assert (messages(page)[-1]["name"], messages(page)[-1]["mine"]) == ("Zoe", True)


def test_two_people_with_one_name_are_told_apart(browsers: Browsers, roomUrl: str) -> None:
    first, second = Page(browsers[0], roomUrl, name="Linus"), Page(browsers[1], roomUrl, name="Linus")
    first.say("from the first Linus")
    second.say("from the second Linus")
    first.say("the first Linus again")
    first.waitForText("from the second Linus")
    second.waitForText("the first Linus again")
    for page, mine in ((first, [True, False, True]), (second, [False, True, False])):
        shown = messages(page)
        assert [m["name"] for m in shown] == ["Linus"] * 3
        assert [m["mine"] for m in shown] == mine, "own messages are this page's, not every Linus's"
        assert [m["cont"] for m in shown] == [False, False, False], "different senders are never grouped"


def test_anonymous_senders_are_never_grouped_together(chat: Twistd, browsers: Browsers, roomUrl: str,
                                                       room: str) -> None:
    page = Page(browsers[0], roomUrl, name="")
    with client(chat, room) as one, client(chat, room) as other:
        for connection in (one, other):
            connection.recv(timeout=10)
        one.send("from one anonymous")
        linesFrom(other, "from one anonymous")
        other.send("from another anonymous")
        page.waitForText("from another anonymous")
    shown = messages(page)
    assert [(m["name"], m["cont"], m["mine"]) for m in shown] == [("anonymous", False, False)] * 2


def test_shift_enter_breaks_lines_that_arrive_as_lines_and_as_spaces_for_a_plain_client(
        chat: Twistd, browsers: Browsers, roomUrl: str, room: str) -> None:
    page = Page(browsers[0], roomUrl, name="Ann")
    other = Page(browsers[1], roomUrl, name="Bob")
    oneLine = page.input.size["height"]
    with client(chat, room) as v1, client(chat, room, subprotocol=None) as plain:
        v1.recv(timeout=10)
        page.input.send_keys("def f():", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "    return 1", Keys.SHIFT, Keys.ENTER,
                             Keys.SHIFT, "# done")
        assert page.input.get_attribute("value") == "def f():\n    return 1\n# done", "Shift+Enter did not send"
        grown = page.input.size["height"]
        assert grown > 2 * oneLine, "the input grows with the lines typed"
        page.input.send_keys(Keys.ENTER)
        page.waitForText("def f():\n    return 1\n# done")
        other.waitForText("def f():\n    return 1\n# done")
        assert [line["text"] for line in linesFrom(v1, "def f():\n    return 1\n# done") if line["type"] == "message"] \
            == ["def f():\n    return 1\n# done"]
        assert plainUntil(plain, "def f():     return 1 # done")[-1] == "def f():     return 1 # done"
    assert page.input.get_attribute("value") == ""
    assert page.input.size["height"] < grown, "and shrinks once sent"
    shown = other.driver.execute_script(
        "const t = document.querySelector('#log .msg:last-child .text');"
        "return [getComputedStyle(t).whiteSpace, t.getBoundingClientRect().height / parseFloat(getComputedStyle(t).lineHeight)]")
    assert shown[0] == "pre-wrap" and round(shown[1]) == 3, "three lines show as three lines"
    long = "a long line without a single break " * 14
    page.say(long.strip())
    assert other.driver.execute_script("const l = document.getElementById('log'); return l.scrollWidth <= l.clientWidth")


def test_control_characters_never_show_and_overrides_stay_inside_their_text(chat: Twistd, browsers: Browsers,
                                                                             roomUrl: str, room: str) -> None:
    page = Page(browsers[0], roomUrl, name="")
    with client(chat, room, subprotocol=None) as plain:  # the plain protocol forwards what it gets
        plain.send("bell\x07 nul\x00 escape\x1b[31m red\x7f")
        plain.send("\u202eevil override")
        plain.send("after the override")
        plainUntil(plain, "after the override")
    page.waitForText("after the override")
    texts = [m["text"] for m in messages(page)]
    assert texts == ["bell nul escape[31m red", "\u202eevil override", "after the override"]
    # The override reverses its own text and nothing beside it: its time, its name and the
    # next entry read as they would without it.
    layout = page.driver.execute_script("""
        const [evil, after] = Array.from(document.querySelectorAll('#log .msg')).slice(1);
        const text = evil.querySelector('.text'), time = evil.querySelector('time');
        return {isolated: getComputedStyle(text).unicodeBidi, timeAfterText: time.getBoundingClientRect().left >= text.getBoundingClientRect().left,
                names: Array.from(document.querySelectorAll('#log .msg .name')).map(n => n.tagName)};
    """)
    assert layout == {"isolated": "isolate", "timeAfterText": True, "names": ["BDI"] * 3}


def test_the_page_fits_a_phone_in_every_state(chat: Twistd, fresh: webdriver.Chrome, room: str) -> None:
    fresh.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    page = Page(fresh, f"http://127.0.0.1:{chat.port}/room/{room}", name=None)
    assert page.layoutFaults() == [], "with the name dialog open"
    page.element("name-input").send_keys("W" * 32, Keys.ENTER)
    page.waitForState("open")
    assert page.layoutFaults() == [], "with a long name"
    page.element("room-input").send_keys("bad room!", Keys.ENTER)
    page.waitUntil("document.getElementById('room-hint').textContent !== ''")
    assert page.layoutFaults() == [], "with the bad room hint"
    go, field = page.element("go").rect, page.element("room-input").rect
    assert field["width"] >= 100, "the room field keeps its width"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fresh.save_screenshot(str(ARTIFACTS / "page-phone-bad-room.png"))
    page.input.send_keys("x" * 600)
    assert page.layoutFaults() == [], "with the too-long hint"
    page.input.clear()
    with client(chat, room, subprotocol=None) as plain:
        for i in range(1000):
            plain.send(f"entry {i} " + ("https://example.org/" + "a" * 120 if i % 10 == 0 else "") + "w" * (i % 70))
        plainUntil(plain, "entry 999 " + "w" * (999 % 70))
    page.waitForText("entry 999 " + "w" * (999 % 70))
    page.say("a message from a long name")
    assert page.layoutFaults() == [], "with 1,000 entries"
    assert go["x"] + go["width"] <= PHONE["width"] + 1


def test_a_chat_that_needs_sign_in_says_so_and_does_not_retry(tmp_path: Path, fresh: webdriver.Chrome) -> None:
    secret = "the application's secret, thirty-two bytes or more"
    beforeScripts(fresh, COUNT_SOCKETS)
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--token-secret", secret, cwd=tmp_path) as server:
        page = Page(fresh, f"http://127.0.0.1:{server.port}/room/members", name=None)
        page.waitForText("This chat needs sign-in. Open it from the application that links here.")
        assert page.element("name-dialog").get_attribute("open") is None, "no name to ask: the token names people"
        assert page.element("status").text == "Sign-in needed"
        assert page.element("name-button").is_displayed() is False
        fresh.execute_async_script(WAIT_MS, 2500)  # longer than the first retry would wait
        assert fresh.execute_script("return window.socketsOpened") == 0, "nothing tried, nothing retried"
        assert [e["text"] for e in page.entries()] == ["This chat needs sign-in. Open it from the application that links here."]
        assert page.layoutFaults() == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        fresh.save_screenshot(str(ARTIFACTS / "page-sign-in-needed.png"))
        # A signed-in link still works.
        token = jwt.encode({"sub": "u7", "name": "Signed Sam"}, secret, algorithm="HS256")
        page = Page(fresh, f"http://127.0.0.1:{server.port}/room/signed#token={token}", name=None)
        page.waitForState("open")
        page.say("signed and in")


def test_day_separators_fall_between_days(chat: Twistd, fresh: webdriver.Chrome, room: str) -> None:
    beforeScripts(fresh, SHIFT_DAYS)
    with client(chat, room, subprotocol=None) as plain:
        for text in ("3 days ago: one", "3 days ago: two", "1 days ago: three", "0 days ago: four", "0 days ago: five"):
            plain.send(text)
        plainUntil(plain, "0 days ago: five")
    page = Page(fresh, f"http://127.0.0.1:{chat.port}/room/{room}")
    page.waitForText("0 days ago: five")
    days = [m["day"] for m in messages(page)]
    weekday = fresh.execute_script(
        "return new Date(Date.now() - 3 * 86400000).toLocaleDateString(undefined, "
        "{weekday: 'long', year: 'numeric', month: 'long', day: 'numeric'})")
    assert days == [weekday, None, "Yesterday", "Today", None]
    assert [m["cont"] for m in messages(page)] == [False, True, False, False, True], "one sender, grouped within a day"


def test_the_title_counts_what_came_while_the_tab_was_hidden(chat: Twistd, browsers: Browsers, roomUrl: str,
                                                            room: str) -> None:
    page = Page(browsers[0], roomUrl, name="Ann")
    driver = page.driver
    with client(chat, room, "?name=Bob") as bob:
        bob.recv(timeout=10)
        bob.send("seen before hiding")
        page.waitForText("seen before hiding")
        driver.minimize_window()
        try:
            page.waitUntil("document.hidden")
            for i in range(3):
                bob.send(f"while you were away {i}")
            page.waitUntil("document.title === " + json.dumps(f"(3) {room} · Chat"))
            assert page.driver.execute_script("return localStorage.getItem('txchat.read.' + "
                                              f"{json.dumps(room)})").endswith(":1"), "hidden is not read"
        finally:
            driver.maximize_window()
            driver.set_window_size(1280, 800)
    page.waitUntil("document.title === " + json.dumps(f"{room} · Chat"))
    page.waitUntil(f"localStorage.getItem('txchat.read.' + {json.dumps(room)}).endsWith(':4')")


def test_new_messages_line_where_the_reader_left_off(chat: Twistd, browsers: Browsers, roomUrl: str,
                                                     room: str) -> None:
    page = Page(browsers[0], roomUrl, name="Ann")
    with client(chat, room, "?name=Bob") as bob:
        bob.recv(timeout=10)
        for i in range(3):
            bob.send(f"read {i}")
        page.waitForText("read 2")
        page.driver.get("about:blank")
        for i in range(2):
            bob.send(f"unread {i}")
        linesFrom(bob, "unread 1")
        page = Page(page.driver, roomUrl, name="Ann")
        page.waitForText("unread 1")
    assert page.texts()[-3:] == ["New messages", "unread 0", "unread 1"]
    assert [e["kind"] for e in page.entries()][-3] == "divider"
    page.driver.refresh()  # everything was seen: no line
    page = Page(page.driver, roomUrl, name="Ann")
    page.waitForText("unread 1")
    assert "New messages" not in page.texts()


def test_counts_are_not_shown_stale_while_disconnected(fresh: webdriver.Chrome, tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        relay = Relay(server.port)
        try:
            page = Page(fresh, f"http://127.0.0.1:{relay.port}/room/counts", name="Ann")
            assert page.element("online").text == "1 online"
            relay.cut()
            page.waitUntil("document.getElementById('status').dataset.state === 'closed'")
            assert page.driver.execute_script(
                "return ['online', 'users'].map(id => document.getElementById(id).textContent)") == ["", ""]
            relay.resume()
            page.driver.execute_script("window.dispatchEvent(new Event('online'))")
            page.waitUntil("document.getElementById('online').textContent === '1 online'")
        finally:
            relay.close()
