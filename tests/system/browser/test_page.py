"""The grown-up page (README "The page"): names, times, grouping, links, history, rooms,
presence, the length hint and a long session, in real headless Chromium against a real
``twistd -n txchat``. Every test chats in a room of its own."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from websockets.sync.client import connect as wsConnect
from websockets.sync.client import ClientConnection
from websockets.typing import Subprotocol

from bench.processes import Twistd
from tests.support.browser import ARTIFACTS, Browsers, Page, makeBrowser


@pytest.fixture
def roomUrl(chat: Twistd, room: str) -> str:
    return f"http://127.0.0.1:{chat.port}/room/{room}"


def v1(chat: Twistd, room: str, query: str = "") -> ClientConnection:
    return wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}{query}", subprotocols=[Subprotocol("txchat.v1")])


def messagesFrom(client: ClientConnection, count: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    while len([line for line in lines if line["type"] == "message"]) < count:
        lines += [json.loads(line) for line in cast(str, client.recv(timeout=10)).split("\n")]
    return [line for line in lines if line["type"] == "message"]


def test_entries_show_name_local_time_and_text_own_distinct_and_grouped(browsers: Browsers, roomUrl: str, chat: Twistd,
                                                                        room: str) -> None:
    ann, bob = Page(browsers[0], roomUrl, name="Ann"), Page(browsers[1], roomUrl, name="Bob")
    with v1(chat, room) as watcher:
        watcher.recv(timeout=10)  # welcome
        ann.say("first from ann")
        ann.say("second from ann")
        bob.say("one from bob")
        sent = messagesFrom(watcher, 3)
    bob.waitForText("second from ann")
    for page, mine in ((ann, [True, True, False]), (bob, [False, False, True])):
        messages = [e for e in page.entries() if e["kind"] == "message"]
        assert [(m["name"], m["text"]) for m in messages] == [
            ("Ann", "first from ann"), ("Ann", "second from ann"), ("Bob", "one from bob")]
        assert [m["mine"] for m in messages] == mine
        assert [m["cont"] for m in messages] == [False, True, False], "consecutive messages of one sender group"
        assert [m["seq"] for m in messages] == [m["seq"] for m in sent]
        local = [datetime.fromtimestamp(m["time"] / 1000).strftime("%H:%M") for m in sent]
        assert [m["time"] for m in messages] == local
    # Grouped entries still name their sender to a screen reader; only the eye skips it.
    names = ann.driver.execute_script(
        "return Array.from(document.querySelectorAll('#log .msg .meta')).map(m => getComputedStyle(m).position)")
    assert names == ["static", "absolute", "static"]
    # What people send is isolated for bidirectional text: it never reorders its neighbours.
    isolated = ann.driver.execute_script(
        "return Array.from(document.querySelectorAll('#log .msg .name, #log .msg .text'))"
        ".map(e => getComputedStyle(e).unicodeBidi)")
    assert isolated == ["isolate"] * 6


def test_the_name_is_asked_once_kept_and_changeable_without_losing_anything(tmp_path: Path, chat: Twistd, roomUrl: str,
                                                                            room: str) -> None:
    driver = makeBrowser(tmp_path / "profile")
    try:
        page = Page(driver, roomUrl, name=None)
        assert page.element("name-dialog").get_attribute("open") is not None, "a first visit asks"
        # Nothing connects until the name is known, and nothing says otherwise behind the dialog.
        assert page.element("status").get_attribute("data-state") == "idle"
        assert page.driver.execute_script("return getComputedStyle(document.getElementById('status')).display") == "none"
        assert page.element("online").get_attribute("textContent") == ""
        page.setName("  Cleo  ")
        page.waitForState("open")
        page.say("hello as cleo")
        assert page.entries()[-1]["name"] == "Cleo"
        driver.refresh()
        page = Page(driver, roomUrl, name=None)
        page.waitForState("open")
        assert page.element("name-dialog").get_attribute("open") is None, "asked once"
        assert page.element("name-button").text == "Name: Cleo"
        with v1(chat, room, "?name=Dan") as dan:
            dan.recv(timeout=10)
            page.setName("Cleopatra")
            dan.send("while cleo renames")
            page.waitForText("while cleo renames")
            page.say("hello as cleopatra")
        entries = page.entries()
        assert [(e["name"], e["text"]) for e in entries if e["kind"] == "message"] == [
            ("Cleo", "hello as cleo"), ("Dan", "while cleo renames"), ("Cleopatra", "hello as cleopatra")]
        assert [e for e in entries if e["kind"] == "notice"] == [], "a rename reconnects quietly"
        assert driver.execute_script("return localStorage.getItem('txchat.name')") == "Cleopatra"
    finally:
        driver.quit()


def test_skipping_the_name_stays_anonymous_and_is_not_asked_again(tmp_path: Path, roomUrl: str) -> None:
    driver = makeBrowser(tmp_path / "profile")
    try:
        page = Page(driver, roomUrl, name=None)
        page.element("name-skip").click()
        page.waitForState("open")
        page.say("no name here")
        assert page.entries()[-1]["name"] == "anonymous"
        assert page.entries()[-1]["mine"] is True
        driver.refresh()
        page = Page(driver, roomUrl, name=None)
        page.waitForState("open")
        assert page.element("name-dialog").get_attribute("open") is None
        assert page.element("name-button").text == "Set your name"
    finally:
        driver.quit()


def test_links_are_clickable_and_everything_else_is_text(browsers: Browsers, roomUrl: str) -> None:
    page = Page(browsers[0], roomUrl)
    text = ("see https://example.com/a?b=1&c=2, or (http://example.org/x). "
            "javascript:alert(1) <img src=x onerror=alert(1)> <a href='https://evil.test'>y</a>")
    page.say(text)
    anchors = page.driver.execute_script(
        "return Array.from(document.querySelectorAll('#log a')).map(a => [a.getAttribute('href'), a.rel, a.target, a.textContent])")
    assert anchors == [
        ["https://example.com/a?b=1&c=2", "noopener noreferrer", "_blank", "https://example.com/a?b=1&c=2"],
        ["http://example.org/x", "noopener noreferrer", "_blank", "http://example.org/x"],
        ["https://evil.test", "noopener noreferrer", "_blank", "https://evil.test"],
    ]
    assert page.entries()[-1]["text"] == text, "the text reads exactly as sent"
    assert page.driver.find_elements(By.CSS_SELECTOR, "#log img") == []


def test_history_shows_on_load(chat: Twistd, room: str, browsers: Browsers, roomUrl: str) -> None:
    with v1(chat, room, "?name=Eve") as eve:
        eve.recv(timeout=10)
        for i in range(3):
            eve.send(f"before you came {i}")
        messagesFrom(eve, 3)
    page = Page(browsers[0], roomUrl)
    page.waitForText("before you came 2")
    assert [(e["name"], e["text"], e["seq"]) for e in page.entries()] == [
        ("Eve", f"before you came {i}", i + 1) for i in range(3)]


def test_rooms_are_apart_and_the_go_to_room_control_refuses_bad_names(chat: Twistd, browsers: Browsers,
                                                                      room: str) -> None:
    here = Page(browsers[0], f"http://127.0.0.1:{chat.port}/room/{room}", name="Ann")
    there = Page(browsers[1], f"http://127.0.0.1:{chat.port}/room/{room}.other", name="Bob")
    assert here.element("room").text == room and there.element("room").text == f"{room}.other"
    here.say("only here")
    there.say("only there")
    assert here.texts() == ["only here"] and there.texts() == ["only there"]

    here.element("room-input").send_keys("not a room!", Keys.ENTER)
    here.waitUntil("document.getElementById('room-hint').textContent !== ''")
    assert "letters, digits" in here.element("room-hint").text
    assert here.element("room-input").get_attribute("aria-invalid") == "true"
    assert here.driver.current_url.endswith(f"/room/{room}")
    field = here.element("room-input")
    field.clear()  # the browser would resolve /room/.. to /: only dots is no room name
    field.send_keys("..", Keys.ENTER)
    here.waitUntil("document.getElementById('room-hint').textContent.includes('not only dots')")
    assert here.driver.current_url.endswith(f"/room/{room}")
    field = here.element("room-input")
    field.clear()
    field.send_keys(f"{room}.other", Keys.ENTER)
    here.waitUntil(f"location.pathname === '/room/{room}.other' && document.getElementById('online').textContent !== ''")
    here.waitForText("only there")
    assert here.element("room").text == f"{room}.other"


def test_online_counts_the_room_and_follows_leaves(tmp_path: Path, browsers: Browsers, roomUrl: str, chat: Twistd,
                                                   room: str) -> None:
    first = Page(browsers[0], roomUrl)
    first.waitUntil("document.getElementById('online').textContent === '1 online'")
    second = Page(browsers[1], roomUrl)
    second.waitUntil("document.getElementById('online').textContent === '2 online'")
    first.waitUntil("document.getElementById('online').textContent === '2 online'")
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}"):  # a plain client counts too
        first.waitUntil("document.getElementById('online').textContent === '3 online'")
    first.waitUntil("document.getElementById('online').textContent === '2 online'")
    second.driver.get("about:blank")  # the tab may keep the page in its back-forward cache
    first.waitUntil("document.getElementById('online').textContent === '1 online'")
    first.say("while the other tab was away")
    second.driver.back()
    second.waitForText("while the other tab was away")
    first.waitUntil("document.getElementById('online').textContent === '2 online'")
    assert second.texts() == ["Reconnected.", "while the other tab was away"]


def test_text_over_the_limit_stays_in_the_input_with_a_hint(chat: Twistd, browsers: Browsers, roomUrl: str,
                                                            room: str) -> None:
    ann, bob = Page(browsers[0], roomUrl, name="Ann"), Page(browsers[1], roomUrl, name="Bob")
    tooLong = "é" * 256 + "ab"  # 514 UTF-8 bytes in 258 characters: two over the server's 512
    ann.input.send_keys(tooLong)
    ann.waitUntil("document.getElementById('hint').textContent !== ''")
    assert ann.element("hint").text == "2 bytes too long (at most 512 bytes)"
    assert ann.input.get_attribute("aria-invalid") == "true"
    assert ann.element("send").get_attribute("disabled") == "true"
    ann.input.send_keys(Keys.ENTER)
    assert ann.input.get_attribute("value") == tooLong, "the text is kept"
    ann.input.send_keys(Keys.BACKSPACE)
    assert ann.element("hint").text == "1 byte too long (at most 512 bytes)"
    ann.input.send_keys(Keys.BACKSPACE, Keys.ENTER)
    bob.waitForText("é" * 256)
    assert [e["text"] for e in bob.entries()] == ["é" * 256], "nothing of the long text was sent"
    assert ann.element("hint").text == ""
    assert ann.element("status").get_attribute("data-state") == "open"


def test_a_long_session_keeps_1000_entries_and_a_burst_of_1000_renders(chat: Twistd, browsers: Browsers, roomUrl: str,
                                                                       room: str) -> None:
    page = Page(browsers[0], roomUrl)
    page.driver.execute_script("""
        window.burst = {longest: 0, tasks: 0, first: null, last: null};
        new PerformanceObserver(list => list.getEntries().forEach(e => {
          burst.tasks++; burst.longest = Math.max(burst.longest, e.duration);
        })).observe({type: "longtask"});
        new MutationObserver(() => {
          const now = performance.now();
          if (burst.first === null) burst.first = now;
          burst.last = now;
        }).observe(document.getElementById("log"), {childList: true});
    """)
    with wsConnect(f"ws://127.0.0.1:{chat.port}/ws/{room}") as sender:
        started = time.monotonic()
        for i in range(1000):
            sender.send(f"burst {i}")
        page.waitForText("burst 999")
        seen = time.monotonic() - started
        figures = page.driver.execute_script("return Object.assign({}, window.burst)")
        for i in range(1000, 1200):
            sender.send(f"more {i}")
        page.waitForText("more 1199")
    texts = page.texts()
    assert len(texts) == 1000, "at most 1,000 entries in the page"
    assert texts == [f"burst {i}" for i in range(200, 1000)] + [f"more {i}" for i in range(1000, 1200)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = (f"burst of 1000 messages: sent to last entry {seen * 1000:.0f} ms; rendering "
              f"{figures['last'] - figures['first']:.0f} ms from first to last entry; "
              f"long tasks {figures['tasks']}, longest {figures['longest']:.0f} ms\n")
    (ARTIFACTS / "burst-render.txt").write_text(report)
    print(report)


def test_a_signed_in_link_names_the_reader_and_an_expired_sign_in_stops_the_page(tmp_path: Path) -> None:
    secret = "the application's secret, thirty-two bytes or more"
    expires = int(time.time()) + 4
    token = jwt.encode({"sub": "u1", "name": "Ada Signed", "rooms": ["shop"], "exp": expires}, secret, algorithm="HS256")
    driver = makeBrowser(tmp_path / "profile")
    try:
        with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--token-secret", secret, cwd=tmp_path) as server:
            page = Page(driver, f"http://127.0.0.1:{server.port}/room/shop#token={token}", name=None)
            page.waitForState("open")
            assert page.element("name-dialog").get_attribute("open") is None, "the application named the reader"
            assert page.element("name-button").text == "Signed in as Ada Signed"
            assert driver.execute_script("return location.hash") == "", "the token left the address bar"
            page.say("signed hello")
            assert (page.entries()[-1]["name"], page.entries()[-1]["mine"]) == ("Ada Signed", True)
            page.waitForText("Your sign-in has expired: open the chat again from the application.")
            assert page.texts()[-2:] == ["Connection closed. token expired",
                                         "Your sign-in has expired: open the chat again from the application."]
            assert page.element("status").text == "Signed out"
            assert "code 4001 token expired" in server.log
            assert token not in server.log
            elsewhere = Page(driver, f"http://127.0.0.1:{server.port}/room/other#token={token}", name=None)
            elsewhere.waitForText("Your sign-in does not include this room.")
            assert elsewhere.element("status").text == "Not allowed"
    finally:
        driver.quit()
