"""The page over txchat.v2 (SPEC §17-§19), in real headless Chromium against a real
``twistd -n txchat``: every message once across cut connections, refusals waited out, older
messages on scrolling up, who is here and who is typing."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, Iterator, cast

import jwt
import pytest
from selenium import webdriver
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from bench.processes import Twistd
from tests.support.browser import ARTIFACTS, Browsers, Page, makeBrowser
from tests.support.relay import Relay

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = makeBrowser(tmp_path / "profile")
    yield driver
    driver.quit()


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    made: list[Relay] = []
    yield made
    for relay in made:
        relay.close()


def client(port: int, room: str, query: str = "", subprotocol: str = "txchat.v1") -> ClientConnection:
    return wsConnect(f"ws://127.0.0.1:{port}/ws/{room}{query}", subprotocols=[Subprotocol(subprotocol)])


def messagesUntil(connection: ClientConnection, until: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    while not any(line.get("text") == until for line in lines):
        lines += [json.loads(line) for line in cast(str, connection.recv(timeout=30)).split("\n")]
    return [line for line in lines if line["type"] == "message"]


def own(page: Page) -> list[dict[str, Any]]:
    return [e for e in page.entries() if e["kind"] == "message" and e["mine"]]


SETTLED = "log.querySelectorAll('.unsettled').length === 0 && log.querySelectorAll('.msg.mine').length === {count}"


def test_the_page_speaks_v2_and_knows_its_own_by_from(chat: Twistd, browsers: Browsers, room: str) -> None:
    page = Page(browsers[0], f"http://127.0.0.1:{chat.port}/room/{room}", name="Ann")
    assert page.driver.execute_script("return localStorage.getItem('txchat.cid')")
    with client(chat.port, room) as watcher:
        watcher.recv(timeout=10)
        page.say("over v2")
        sent = messagesUntil(watcher, "over v2")
    cid = page.driver.execute_script("return localStorage.getItem('txchat.cid')")
    assert sent[-1]["from"] == f"a:{cid}"
    assert own(page)[-1] | {"time": None} == {
        "kind": "message", "name": "Ann", "text": "over v2", "time": None, "seq": sent[-1]["seq"], "mine": True,
        "cont": False, "from": f"a:{cid}", "state": "sent", "day": "Today", "note": None}


def test_every_message_arrives_once_in_order_across_three_cuts(fresh: webdriver.Chrome, relays: list[Relay],
                                                               tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        relay = Relay(server.port)
        relays.append(relay)
        page = Page(fresh, f"http://127.0.0.1:{relay.port}/room/cuts", name="Ann")
        texts = [f"message {i}" for i in range(30)]
        with client(server.port, "cuts") as watcher:
            watcher.recv(timeout=10)
            for i, text in enumerate(texts):
                if i in (6, 15, 24):
                    relay.cut()  # the next ones may go into the dying connection
                if i in (9, 18, 27):  # and this one is typed while it is down
                    page.waitUntil("document.getElementById('status').dataset.state !== 'open'")
                    page.input.send_keys(text)
                    assert page.element("send").get_attribute("disabled") is None, "a message waits to go"
                    page.element("send").click()
                    assert own(page)[-1]["state"] == "pending"
                    relay.resume()
                    page.driver.execute_script("window.dispatchEvent(new Event('online'))")
                    continue
                page.type(text)
            page.waitUntil(SETTLED.format(count=30))
            arrived = messagesUntil(watcher, texts[-1])
        assert [m["text"] for m in arrived] == texts, "each once, in order"
        entries = own(page)
        assert [e["text"] for e in entries] == texts
        assert {e["state"] for e in entries} == {"sent"}
        seqs = [e["seq"] for e in entries]
        assert seqs == sorted(seqs) and len(set(seqs)) == 30
        assert page.driver.execute_script("return localStorage.getItem('txchat.outbox.cuts')") is None


def test_what_is_not_acknowledged_is_sent_after_a_reload(fresh: webdriver.Chrome, relays: list[Relay],
                                                         tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        relay = Relay(server.port)
        relays.append(relay)
        url = f"http://127.0.0.1:{relay.port}/room/reload"
        page = Page(fresh, url, name="Ann")
        relay.cut()
        page.waitForState("closed")
        page.type("typed while away, then reloaded")
        assert own(page)[-1]["state"] == "pending" and own(page)[-1]["note"] == "Sending…"
        # Reloaded while the next retry is seconds away: only the new page can send it.
        page.waitUntil("/retrying in ([3-9]|10) s$/.test(document.getElementById('status').textContent)")
        relay.resume()
        with client(server.port, "reload") as watcher:
            watcher.recv(timeout=10)
            page = Page(fresh, url, name=None)
            page.waitUntil(SETTLED.format(count=1))
            assert [m["text"] for m in messagesUntil(watcher, "typed while away, then reloaded")] == [
                "typed while away, then reloaded"]
            watcher.send("and nothing else")
            assert [m["text"] for m in messagesUntil(watcher, "and nothing else")] == ["and nothing else"]


def test_rate_limited_messages_wait_and_all_arrive_paced_in_order(fresh: webdriver.Chrome, tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--rate-limit", "2", "--rate-burst", "3",
                cwd=tmp_path) as server:
        page = Page(fresh, f"http://127.0.0.1:{server.port}/room/paced", name="Ann")
        texts = [f"quick {i}" for i in range(8)]
        with client(server.port, "paced") as watcher:
            watcher.recv(timeout=10)
            for text in texts:
                page.type(text)
            page.waitUntil("Array.from(log.querySelectorAll('.msg .state')).some(s => /^Slow down — try again in \\d+ s$/"
                           ".test(s.textContent))")
            assert page.driver.execute_script(
                "return document.querySelector('#log .msg[data-state=waiting]') !== null")
            page.waitUntil(SETTLED.format(count=8))
            arrived = messagesUntil(watcher, texts[-1])
        assert [m["text"] for m in arrived] == texts
        assert arrived[-1]["time"] - arrived[0]["time"] >= 2000, "paced: 3 at once, then 2 a second"
        assert [e["text"] for e in page.entries() if e["kind"] == "notice"] == [], "the connection stayed open"


def test_scrolling_up_reads_back_to_the_first_message_without_the_view_jumping(fresh: webdriver.Chrome,
                                                                               tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        texts = [f"old {i}" for i in range(500)]
        with client(server.port, "scroll") as sender:
            sender.recv(timeout=10)
            for text in texts:
                sender.send(text)
            messagesUntil(sender, texts[-1])
        page = Page(fresh, f"http://127.0.0.1:{server.port}/room/scroll", name="Ann")
        page.waitForText(texts[-1])
        assert len([e for e in page.entries() if e["kind"] == "message"]) == 50
        jumps = []
        for _ in range(20):
            before = page.driver.execute_script("""
                const log = document.getElementById('log');
                log.scrollTop = 0;
                log.dispatchEvent(new Event('scroll'));
                const first = log.querySelector('.msg .text');
                window.anchor = first;
                return [log.querySelectorAll('.msg').length, first.getBoundingClientRect().top];""")
            page.waitUntil(f"log.querySelectorAll('.msg').length > {before[0]} || "
                           "document.getElementById('more').textContent.startsWith('This is the start')")
            after = page.driver.execute_script("return window.anchor.getBoundingClientRect().top")
            jumps.append(after - before[1])
            if page.driver.execute_script("return document.querySelector('#log .msg').dataset.seq") == "1":
                break
        shown = [e for e in page.entries() if e["kind"] == "message"]
        assert [e["text"] for e in shown] == texts
        assert [e["seq"] for e in shown] == list(range(1, 501))
        assert all(abs(jump) <= 1 for jump in jumps), jumps
        assert len(jumps) == 9, "50 a time"


def test_who_is_here_and_who_is_typing(chat: Twistd, browsers: Browsers, fresh: webdriver.Chrome, room: str) -> None:
    url = f"http://127.0.0.1:{chat.port}/room/{room}"
    ann, bob = Page(browsers[0], url, name="Ann"), Page(browsers[1], url, name="Bob")
    cleo = Page(fresh, url, name="Cleo")
    members = "Array.from(document.querySelectorAll('#members li')).map(li => li.textContent)"
    with client(chat.port, room, "?name=Dan&cid=dan-the-client", subprotocol="txchat.v2") as dan:
        ann.waitUntil(f"{members}.length === 4")
        assert ann.driver.execute_script(f"return {members}") == ["Ann (you)", "Bob", "Cleo", "Dan"]
        assert ann.element("users").text == "4 people"
        assert ann.element("people-button").get_attribute("aria-expanded") == "true", "open on a wide screen"
        dan.send(json.dumps({"type": "typing"}))
        ann.waitUntil("document.getElementById('typing').textContent === 'Dan is typing…'")
        cleo.input.send_keys("thinking about it")
        ann.waitUntil("/^(Dan and Cleo|Cleo and Dan) are typing…$/.test(document.getElementById('typing').textContent)")
        assert bob.driver.execute_script("return document.getElementById('typing').textContent") != ""
        assert cleo.driver.execute_script("return document.getElementById('typing').textContent") == "Dan is typing…", \
            "one's own typing is not shown"
        dan.send(json.dumps({"type": "send", "id": "d1", "text": "done typing"}))
        ann.waitForText("done typing")
        ann.waitUntil("document.getElementById('typing').textContent === 'Cleo is typing…'")
    ann.waitUntil(f"{members}.length === 3")
    assert ann.element("users").text == "3 people"
    # On a phone the list is behind a button.
    ann.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        ann.driver.refresh()
        ann = Page(ann.driver, url, name=None)
        ann.waitUntil(f"{members}.length === 3")
        assert ann.element("people").is_displayed() is False
        assert ann.layoutFaults() == []
        ann.element("people-button").click()
        assert ann.element("people").is_displayed() is True
        assert ann.element("people-button").get_attribute("aria-expanded") == "true"
        assert ann.layoutFaults() == []
    finally:
        ann.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_deleted_message_leaves_the_page(tmp_path: Path, fresh: webdriver.Chrome) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--api-key", "k" * 32, cwd=tmp_path) as server:
        page = Page(fresh, f"http://127.0.0.1:{server.port}/room/moderated", name="Ann")
        page.say("keep me")
        page.say("delete me")
        page.say("keep me too")
        entry = [e for e in page.entries() if e["text"] == "delete me"][0]
        epoch = page.driver.execute_script("return document.querySelector('#log .msg').dataset.epoch")
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/rooms/moderated/messages/{entry['seq']}?epoch={epoch}",
            method="DELETE", headers={"Authorization": "Bearer " + "k" * 32})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status in (200, 204)
        page.waitUntil("!Array.from(log.querySelectorAll('.text')).some(t => t.textContent === 'delete me')")
        shown = [e for e in page.entries() if e["kind"] == "message"]
        assert [(e["text"], e["cont"]) for e in shown] == [("keep me", False), ("keep me too", True)]


UP = """
const log = document.getElementById('log');
log.scrollTop = 0;
log.dispatchEvent(new Event('scroll'));
const text = log.querySelector('.msg .text');
window.anchor = text;
return [text.getBoundingClientRect().top, log.querySelector('.msg').dataset.seq];
"""
DOWN = """
const log = document.getElementById('log');
const last = Array.from(log.querySelectorAll('.msg')).pop();
log.scrollTop = log.scrollHeight;
log.dispatchEvent(new Event('scroll'));
return last.dataset.seq;
"""


def test_reading_back_through_10000_messages_keeps_the_page_bounded(fresh: webdriver.Chrome, tmp_path: Path) -> None:
    count = 10000
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        with client(server.port, "long", subprotocol="txchat.v1") as sender:
            sender.recv(timeout=10)
            for i in range(count):
                sender.send(f"line {i}")
            messagesUntil(sender, f"line {count - 1}")
        page = Page(fresh, f"http://127.0.0.1:{server.port}/room/long", name="Ann")
        page.waitForText(f"line {count - 1}")
        heap = [page.driver.execute_script("return performance.memory.usedJSHeapSize")]
        most, jumps = 0, []
        while True:
            top, first = page.driver.execute_script(UP)
            if first == "1":
                break
            page.waitUntil(f"log.querySelector('.msg').dataset.seq !== '{first}'")
            jumps.append(page.driver.execute_script("return window.anchor.getBoundingClientRect().top") - top)
            most = max(most, page.driver.execute_script("return document.getElementById('log').children.length"))
            heap.append(page.driver.execute_script("return performance.memory.usedJSHeapSize"))
        assert most <= 1500, "entries far off screen are dropped"
        assert all(abs(jump) <= 1 for jump in jumps), max(jumps, key=abs)
        while (last := page.driver.execute_script(DOWN)) != str(count):
            page.waitUntil(f"Array.from(log.querySelectorAll('.msg')).pop().dataset.seq !== '{last}'")
            most = max(most, page.driver.execute_script("return document.getElementById('log').children.length"))
        assert most <= 1500, "and reloaded as the reader comes back"
        seqs = page.driver.execute_script("return Array.from(document.querySelectorAll('#log .msg')).map(e => Number(e.dataset.seq))")
        assert seqs == list(range(count - len(seqs) + 1, count + 1)), "in order, none missing, none twice"
        page.driver.execute_script(UP)  # reading back again, then sending: back to the end at once
        page.waitUntil("log.querySelector('.msg').dataset.seq !== '" + str(seqs[0]) + "'")
        page.say("back to now")
        page.waitUntil(SETTLED.format(count=1))
        shown = [e for e in page.entries() if e["kind"] == "message"]
        assert [e["text"] for e in shown][-2:] == [f"line {count - 1}", "back to now"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "scrollback-memory.txt").write_text(
        f"reading back {count} messages: at most {most} entries in the page; JS heap "
        f"{heap[0] / 1e6:.1f} MB before, at most {max(heap) / 1e6:.1f} MB while reading back\n")


def test_the_read_position_follows_a_signed_in_reader_to_another_browser(tmp_path: Path, fresh: webdriver.Chrome,
                                                                         browsers: Browsers) -> None:
    secret = "the application's secret, thirty-two bytes or more"
    reader = jwt.encode({"sub": "reader", "name": "Rita"}, secret, algorithm="HS256")
    writer = jwt.encode({"sub": "writer", "name": "Walt"}, secret, algorithm="HS256")
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--token-secret", secret, cwd=tmp_path) as server:
        url = f"http://127.0.0.1:{server.port}/room/desk#token="
        with client(server.port, "desk", f"?token={writer}", subprotocol="txchat.v2") as walt, \
                client(server.port, "desk", f"?token={reader}", subprotocol="txchat.v2") as ritasPhone:
            walt.recv(timeout=10)
            page = Page(browsers[0], url + reader, name=None)
            for i in range(3):
                walt.send(json.dumps({"type": "send", "id": f"r{i}", "text": f"read {i}"}))
            page.waitForText("read 2")
            lines: list[dict[str, Any]] = []
            while not any(line["type"] == "read" and line["seq"] == 3 for line in lines):  # the page said so
                lines += [json.loads(line) for line in cast(str, ritasPhone.recv(timeout=10)).split("\n")]
            page.driver.get("about:blank")
            for i in range(2):
                walt.send(json.dumps({"type": "send", "id": f"u{i}", "text": f"unread {i}"}))
            elsewhere = Page(fresh, url + reader, name=None)  # another browser: nothing of hers kept there
            elsewhere.waitForText("unread 1")
            texts = elsewhere.texts()
    assert texts[texts.index("New messages") + 1:] == ["unread 0", "unread 1"]
    assert texts[:texts.index("New messages")] == ["read 0", "read 1", "read 2"]
