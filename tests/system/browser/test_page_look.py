"""How the page looks and reads, in light and dark, on a desktop and a phone: axe-core (the
copy that ships with selenium-axe-python) finds no serious or critical accessibility
violation, with the name dialog open, the member list open and the hints showing; and
screenshots of a room with a few people talking go to ``artifacts/``: the member list, a
multi-line message, a refused and a pending send."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
from typing import Any, Iterator, cast

import pytest
from selenium import webdriver
from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol

from selenium.webdriver.common.keys import Keys

from bench.processes import Twistd
from tests.support.browser import ARTIFACTS, Page, makeBrowser
from tests.support.relay import Relay


AXE = (importlib.resources.files("selenium_axe_python") / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ["violations"]}).then(
  results => done(results.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(" "))}))),
  error => done([{id: "axe failed", impact: "critical", help: String(error), nodes: []}]));
"""
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


@pytest.fixture(scope="module")
def people(chat: Twistd) -> Iterator[None]:
    """Bob and Cleo, who have been talking in the garden and on the porch, and stay."""
    with contextlib.ExitStack() as stack:
        for room in ("garden", "porch"):
            url = f"ws://127.0.0.1:{chat.port}/ws/{room}"
            bob = stack.enter_context(wsConnect(url + "?name=Bob", subprotocols=[Subprotocol("txchat.v1")]))
            cleo = stack.enter_context(wsConnect(url + "?name=Cleo", subprotocols=[Subprotocol("txchat.v1")]))
            for client, text in ((bob, "Morning! Is the garden meeting still on for Saturday?"),
                                 (cleo, "Yes, 10:00 at the north gate."),
                                 (cleo, "The planting plan is here: https://example.org/garden/plan"),
                                 (bob, "Great, I'll bring the seedlings.")):
                client.send(text)
            received = 0
            while received < 4:
                received += sum(json.loads(line)["type"] == "message" for line in cast(str, bob.recv(timeout=10)).split("\n"))
        yield


# The page believes the server takes 700 bytes (the server takes 512): so that a test can
# show how the page shows a send the server refuses as too long.
LOOSER_LIMIT = """
const Native = window.WebSocket;
const loosen = data => data.split("\\n").map(line => line.includes('"type":"welcome"')
  ? line.replace(/"maxMessageSize":\\d+/, '"maxMessageSize":700') : line).join("\\n");
window.WebSocket = class extends Native {
  set onmessage(handler) { super.onmessage = event => handler({data: loosen(event.data)}); }
};
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    driver = makeBrowser(tmp_path_factory.mktemp("profile"))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LOOSER_LIMIT})
    yield driver
    driver.quit()


def colourScheme(driver: webdriver.Chrome, scheme: str) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})


def seriousViolations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    driver.execute_script(AXE)
    return [v for v in driver.execute_async_script(RUN_AXE) if v["impact"] in ("serious", "critical")]


def refusedSend(page: Page) -> None:
    """A text the page lets go and the server refuses as too long: kept, with the reason."""
    page.input.send_keys("é" * 300, Keys.ENTER)  # 600 bytes
    page.waitUntil("document.querySelector('#log .msg[data-state=failed]') !== null")
    assert page.entries()[-1]["note"].startswith("Not sent: too long")


def multiLine(page: Page) -> None:
    page.input.send_keys("Shopping list:", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "- seedlings", Keys.SHIFT, Keys.ENTER,
                         Keys.SHIFT, "- tea")
    assert page.input.get_attribute("value") == "Shopping list:\n- seedlings\n- tea"
    page.input.send_keys(Keys.ENTER)
    page.waitForText("Shopping list:\n- seedlings\n- tea")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violations(chat: Twistd, people: None, browser: webdriver.Chrome,
                                             scheme: str) -> None:
    colourScheme(browser, scheme)
    try:
        page = Page(browser, f"http://127.0.0.1:{chat.port}/room/porch", name="Ann")
        page.say(f"Hello everyone, in {scheme}!")
        refusedSend(page)
        page.waitUntil("document.getElementById('people').hidden === false")  # the member list open
        page.input.send_keys("é" * 400)  # the over-long hint showing, too
        page.waitUntil("document.getElementById('hint').textContent !== ''")
        assert seriousViolations(browser) == []
        page.element("name-button").click()  # and the name dialog open
        assert page.element("name-dialog").get_attribute("open") is not None
        assert seriousViolations(browser) == []
    finally:
        colourScheme(browser, "")


def test_screenshots_desktop_and_phone_light_and_dark(chat: Twistd, people: None, browser: webdriver.Chrome) -> None:
    relay = Relay(chat.port)
    try:
        page = Page(browser, f"http://127.0.0.1:{relay.port}/room/garden", name="Ann")
        page.say("Lovely. I'll bring tea for everyone ☕")
        multiLine(page)
        refusedSend(page)
        page.waitUntil("document.getElementById('people').hidden === false")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            for scheme in ("light", "dark"):
                colourScheme(browser, scheme)
                browser.set_window_size(1280, 800)
                assert browser.save_screenshot(str(ARTIFACTS / f"page-desktop-{scheme}.png"))
                browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
                try:
                    page.waitUntil("document.getElementById('people').hidden === true")  # behind its button
                    # Made narrow, the log still shows its end: the refused message and its reason.
                    page.waitUntil("log.scrollTop + log.clientHeight >= log.scrollHeight - 2")
                    assert browser.save_screenshot(str(ARTIFACTS / f"page-phone-{scheme}.png"))
                    # On a phone the header and the input row stay inside the viewport.
                    form, log, go = page.element("form").rect, page.element("log").rect, page.element("go").rect
                    assert form["y"] + form["height"] <= PHONE["height"] + 1 and log["y"] + log["height"] <= form["y"] + 1
                    assert go["x"] + go["width"] <= PHONE["width"] + 1
                    assert page.layoutFaults() == []
                    page.element("people-button").click()
                    assert browser.save_screenshot(str(ARTIFACTS / f"page-phone-people-{scheme}.png"))
                    assert page.layoutFaults() == []
                    page.element("people-button").click()
                finally:
                    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            relay.cut()  # and a message on its way while the connection is down
            page.waitUntil("document.getElementById('status').dataset.state !== 'open'")
            page.type("Is anyone there?")
            assert page.entries()[-1]["state"] == "pending"
            colourScheme(browser, "light")
            assert browser.save_screenshot(str(ARTIFACTS / "page-desktop-pending.png"))
            relay.resume()
            browser.execute_script("window.dispatchEvent(new Event('online'))")
            page.waitUntil("document.querySelectorAll('#log .unsettled').length === 1")  # the refused one stays
        finally:
            colourScheme(browser, "")
    finally:
        relay.close()
