"""The page across broken connections, in real headless Chromium: a TCP relay (tests/relay.py)
stands between the browser and txchat, and the tests cut it, restart the server behind it or
kill a cluster node and point the relay at the other one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, cast

import pytest
from selenium import webdriver
from selenium.webdriver.common.keys import Keys
from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from bench.processes import Twistd
from bench.redisserver import RedisServer
from tests.support.browser import Page, makeBrowser
from tests.support.relay import Relay


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    driver = makeBrowser(tmp_path_factory.mktemp("profile"))
    yield driver
    driver.quit()


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    made: list[Relay] = []
    yield made
    for relay in made:
        relay.close()


def sendAndConfirm(port: int, room: str, texts: list[str]) -> None:
    """Send over the plain protocol and wait until the server has numbered and delivered
    every one (the sender gets its own messages back)."""
    with wsConnect(f"ws://127.0.0.1:{port}/ws/{room}") as sender:
        for text in texts:
            sender.send(text)
        received: list[str] = []
        while len(received) < len(texts):
            received += cast(str, sender.recv(timeout=10)).split("\n")
    assert received == texts


def messageTexts(page: Page) -> list[str]:
    return [entry["text"] for entry in page.entries() if entry["kind"] == "message"]


def test_a_cut_connection_recovers_every_missed_message_once_in_order(browser: webdriver.Chrome, relays: list[Relay],
                                                                      tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        relay = Relay(server.port)
        relays.append(relay)
        page = Page(browser, f"http://127.0.0.1:{relay.port}/room/cut", name="Ann")
        sendAndConfirm(server.port, "cut", ["before the cut"])
        page.waitForText("before the cut")

        relay.cut()
        page.waitForText("Connection closed.")
        page.input.send_keys("typed while away")
        assert page.element("send").get_attribute("disabled") is None, "over v2 a message typed while away waits to go"
        missed = [f"missed {i}" for i in range(30)]
        sendAndConfirm(server.port, "cut", missed)
        relay.resume()
        page.driver.execute_script("window.dispatchEvent(new Event('online'))")  # back online: at once
        page.waitForText("missed 29")

        assert page.texts() == ["before the cut", "Connection closed.", "Reconnected.", *missed]
        assert [e["seq"] for e in page.entries() if e["kind"] == "message"] == list(range(1, 32))
        assert page.input.get_attribute("value") == "typed while away", "the typed text is kept"
        page.waitForState("open")
        page.input.send_keys(Keys.ENTER)
        page.waitForText("typed while away")
        assert messageTexts(page)[-1] == "typed while away"


def test_a_page_dropped_as_too_slow_resumes_and_shows_every_message_once(
    browser: webdriver.Chrome, relays: list[Relay], tmp_path: Path,
) -> None:
    """A page whose link stops taking what the server sends (held by the relay, behind a small
    window) is dropped with 1013 "too slow; resume with since"; once the link flows again it
    reads what was on its way and the close, and resumes from there: every message once."""
    # The kernel lets the server queue about 4 MB on a socket whose reader has stopped: large
    # messages fill that in a hundred or so. And the page has 30 s, not 1, to answer the close
    # once it reads again, however busy the machine.
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--send-queue", "8", "--max-message-size", "60000",
                "--close-timeout", "30", cwd=tmp_path) as server:
        relay = Relay(server.port, window=4096)
        relays.append(relay)
        page = Page(browser, f"http://127.0.0.1:{relay.port}/room/slow", name="Ann")
        page.waitForState("open")
        relay.hold()
        logged = len(server.lines)
        texts: list[str] = []
        with wsConnect(f"ws://127.0.0.1:{server.port}/ws/slow") as sender:
            while not any("dropped slow client" in line for line in server.lines[logged:]):
                assert len(texts) < 500, "the held page was never dropped"
                texts.append(f"line {len(texts) + 1} " + "x" * 50000)
                sender.send(texts[-1])
                assert sender.recv(timeout=10) == texts[-1]  # numbered and delivered
        relay.release()
        page.waitForText(texts[-1])

        notices = [e["text"] for e in page.entries() if e["kind"] == "notice"]
        assert notices == ["Connection closed. too slow; resume with since", "Reconnected."]
        assert messageTexts(page) == texts
        assert [e["seq"] for e in page.entries() if e["kind"] == "message"] == list(range(1, len(texts) + 1))
        page.waitForState("open")


def test_retries_back_off_with_jitter_from_under_a_second_to_at_most_ten(browser: webdriver.Chrome, relays: list[Relay],
                                                                         tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as server:
        page = Page(browser, f"http://127.0.0.1:{server.port}/room/backoff")
        delays = page.driver.execute_script(
            "return [0, 1, 2, 3, 4, 5, 8, 20].map(n => Array.from({length: 200}, () => txchatRetryDelay(n)))")
    first, *_, late = delays
    assert 500 <= min(first) and max(first) <= 1000, "the first retry comes within a second"
    assert all(max(d) <= 10000 for d in delays), "never more than ten seconds apart"
    assert min(late) >= 5000
    assert [sorted(d)[100] for d in delays[:5]] == sorted(sorted(d)[100] for d in delays[:5]), "growing"
    assert all(len(set(d)) > 150 for d in delays), "jittered"


def test_a_restart_without_redis_or_a_kept_log_says_messages_may_be_missing(
        browser: webdriver.Chrome, relays: list[Relay], tmp_path: Path) -> None:
    first = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--store", "memory", cwd=tmp_path)
    relay = Relay(first.port)
    relays.append(relay)
    try:
        page = Page(browser, f"http://127.0.0.1:{relay.port}/room/restart")
        sendAndConfirm(first.port, "restart", ["from the old process"])
        page.waitForText("from the old process")
    finally:
        first.stop()
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--store", "memory", cwd=tmp_path) as second:
        relay.resume(second.port)  # the page retries by itself, with its backoff
        page.waitForText("Some messages may be missing.")
        page.waitForState("open")
        sendAndConfirm(second.port, "restart", ["from the new process"])
        page.waitForText("from the new process")
        entries = page.entries()
    assert [e["text"] for e in entries] == [
        "from the old process", "Connection closed. server shutting down",
        "Some messages may be missing.", "from the new process"]
    assert [e["seq"] for e in entries if e["kind"] == "message"] == [1, 1], "a new stream"


def test_a_killed_node_is_replaced_by_the_other_with_nothing_missing_or_doubled(browser: webdriver.Chrome,
                                                                                relays: list[Relay],
                                                                                tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    nodes = [Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, cwd=tmp_path) for _ in range(2)]
    try:
        for node in nodes:
            node.waitFor("connected to Redis")
        doomed, survivor = nodes
        relay = Relay(doomed.port)
        relays.append(relay)
        page = Page(browser, f"http://127.0.0.1:{relay.port}/room/failover", name="Ann")
        with wsConnect(f"ws://127.0.0.1:{survivor.port}/ws/failover", subprotocols=[Subprotocol("txchat.v1")]) as bob:
            assert json.loads(bob.recv(timeout=10))["type"] == "welcome"
            page.say("before the crash")
            bob.send("bob before the crash")
            page.waitForText("bob before the crash")

            doomed.process.kill()
            doomed.process.wait()
            page.waitForText("Connection closed.")
            during = [f"while the node is down {i}" for i in range(20)]
            for text in during:
                bob.send(text)
            lines: list[dict[str, Any]] = []
            while not any(line.get("text") == during[-1] for line in lines):
                lines += [json.loads(line) for line in cast(str, bob.recv(timeout=10)).split("\n")]
            relay.resume(survivor.port)
            page.driver.execute_script("window.dispatchEvent(new Event('online'))")
            page.waitForText(during[-1])
            bob.send("after the failover")
            page.waitForText("after the failover")
            entries = page.entries()
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
    assert [e["text"] for e in entries] == [
        "before the crash", "bob before the crash", "Connection closed.", "Reconnected.",
        *during, "after the failover"]
    seqs = [e["seq"] for e in entries if e["kind"] == "message"]
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_gap_longer_than_the_server_recovers_says_so_and_shows_the_history(
        browser: webdriver.Chrome, relays: list[Relay], tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--history", "20", "--recovery-max", "20",
                cwd=tmp_path) as server:
        relay = Relay(server.port)
        relays.append(relay)
        page = Page(browser, f"http://127.0.0.1:{relay.port}/room/gap")
        sendAndConfirm(server.port, "gap", ["seen 1", "seen 2"])
        page.waitForText("seen 2")
        relay.cut()
        page.waitForText("Connection closed.")
        sendAndConfirm(server.port, "gap", [f"gone {i}" for i in range(3, 33)])  # 3..32: 13..32 kept
        relay.resume()
        page.driver.execute_script("window.dispatchEvent(new Event('online'))")
        page.waitForText("gone 32")
        entries = page.entries()
    assert [e["text"] for e in entries] == [
        "seen 1", "seen 2", "Connection closed.", "Some messages may be missing.",
        *[f"gone {i}" for i in range(13, 33)]]
    assert [e["seq"] for e in entries if e["kind"] == "message"] == [1, 2, *range(13, 33)]


def test_a_restart_with_the_kept_log_misses_nothing(browser: webdriver.Chrome, relays: list[Relay],
                                                    tmp_path: Path) -> None:
    first = Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path)  # the default: a SQLite log
    relay = Relay(first.port)
    relays.append(relay)
    try:
        page = Page(browser, f"http://127.0.0.1:{relay.port}/room/kept")
        sendAndConfirm(first.port, "kept", ["from the old process"])
        page.waitForText("from the old process")
    finally:
        first.stop()
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", cwd=tmp_path) as second:
        sendAndConfirm(second.port, "kept", ["while the page was away"])
        relay.resume(second.port)
        page.driver.execute_script("window.dispatchEvent(new Event('online'))")
        page.waitForText("while the page was away")
        entries = page.entries()
    assert [e["text"] for e in entries] == [
        "from the old process", "Connection closed. server shutting down", "Reconnected.", "while the page was away"]
    assert [e["seq"] for e in entries if e["kind"] == "message"] == [1, 2], "one stream across the restart"
