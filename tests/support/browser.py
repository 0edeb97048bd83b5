"""Driving the chat page in real headless Chromium (Debian's chromium and chromium-driver).

Selenium's calls block; the tests that use them never touch the Twisted reactor. Every wait is
event-driven: a script in the page resolves when a MutationObserver sees what the test waits
for, and the script timeout bounds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The two browsers of the browser tests' module fixture (tests/system/browser/conftest.py).
Browsers = tuple[webdriver.Chrome, webdriver.Chrome]
ARTIFACTS = Path(os.environ.get("TXCHAT_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))

# Resolves once `condition` (a JavaScript expression over `log`, the #log element) holds:
# checked now and after every change below <body>.
WAIT_UNTIL = """
const [condition, done] = [arguments[0], arguments[arguments.length - 1]];
const log = document.getElementById("log");
const holds = new Function("log", "return (" + condition + ");");
if (holds(log)) { done(true); return; }
// Checked again on every change to the page, every scroll (of the log or any element) and
// every resize of the viewport: a condition on where the log is scrolled to changes on no mutation.
const check = () => {
  if (!holds(log)) return;
  observer.disconnect();
  document.removeEventListener("scroll", check, true);
  window.removeEventListener("resize", check);
  done(true);
};
const observer = new MutationObserver(check);
observer.observe(document.body, {childList: true, subtree: true, attributes: true, characterData: true});
document.addEventListener("scroll", check, {capture: true, passive: true});
window.addEventListener("resize", check);
"""

# Each log entry: a message's parts (with its day separator, if it starts a day, and its
# state if it is the reader's: pending, waiting, failed or sent), a divider's or a notice's text.
ENTRIES = """
return Array.from(document.getElementById("log").children).map(e => e.classList.contains("msg") ? {
  kind: "message", name: e.querySelector(".name").textContent, text: e.querySelector(".text").textContent,
  time: e.querySelector("time").textContent, seq: e.dataset.seq ? Number(e.dataset.seq) : null,
  mine: e.classList.contains("mine"), cont: e.classList.contains("cont"), from: e.dataset.from || null,
  state: e.dataset.state || null, day: e.querySelector(".day") ? e.querySelector(".day").textContent : null,
  note: e.querySelector(".state") ? e.querySelector(".state").textContent : null,
} : e.classList.contains("divider") ? {kind: "divider", text: e.textContent}
  : {kind: "notice", text: e.textContent, bold: e.querySelector("b") !== null});
"""

# What breaks a layout at the viewport's width: sideways scrolling, a visible control outside
# the viewport, a control squeezed below a usable width, a button's label on two lines.
LAYOUT_FAULTS = """
const width = document.documentElement.clientWidth, faults = [];
const label = e => e.id ? "#" + e.id : e.tagName.toLowerCase() + "." + e.className;
if (document.documentElement.scrollWidth > width) faults.push("the page scrolls sideways: " + document.documentElement.scrollWidth);
const log = document.getElementById("log");
if (log.scrollWidth > log.clientWidth + 1) faults.push("the log scrolls sideways: " + log.scrollWidth);
for (const e of document.querySelectorAll("header *, #form *, #typing, #people *, dialog[open] *")) {
  if (e.closest(".visually-hidden") || e.parentElement.closest("button") || !e.getClientRects().length) continue;
  const r = e.getBoundingClientRect();
  if (r.left < -1 || r.right > width + 1) faults.push(label(e) + " outside the viewport: " + r.left + ".." + r.right);
}
for (const e of document.querySelectorAll("input, textarea")) {
  if (e.getClientRects().length && e.getBoundingClientRect().width < 80) faults.push(label(e) + " squeezed: " + e.getBoundingClientRect().width);
}
for (const b of document.querySelectorAll("button")) {
  if (!b.getClientRects().length) continue;
  const range = document.createRange();
  range.selectNodeContents(b);
  const tops = new Set(Array.from(range.getClientRects(), r => Math.round(r.top)));
  if (tops.size > 1) faults.push(label(b) + " on " + tops.size + " lines");
}
return faults;
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
    driver.set_script_timeout(20)
    return driver


class Page:
    """One tab on the chat page, past the name question: C{name} is saved as the display
    name ("" stays anonymous); None leaves the question unanswered."""

    def __init__(self, driver: webdriver.Chrome, url: str, name: str | None = "") -> None:
        self.driver = driver
        driver.get(url)
        if name is not None:
            self.setName(name)
            self.waitUntil("document.getElementById('online').textContent !== ''")

    def setName(self, name: str) -> None:
        """Answer the name question if it is asked, or ask it with the header's button."""
        if not self.driver.execute_script("return document.getElementById('name-dialog').open"):
            if self.driver.execute_script("return localStorage.getItem('txchat.name')") == name:
                return
            self.driver.find_element(By.ID, "name-button").click()
        field = self.driver.find_element(By.ID, "name-input")
        field.clear()
        if name:
            field.send_keys(name)
            self.driver.find_element(By.ID, "name-save").click()
        else:
            self.driver.find_element(By.ID, "name-skip").click()

    def waitUntil(self, condition: str) -> None:
        self.driver.execute_async_script(WAIT_UNTIL, condition)

    def waitForState(self, state: str) -> None:
        self.waitUntil(f"document.getElementById('status').dataset.state === {json.dumps(state)}")

    def waitForText(self, text: str) -> None:
        """Until some entry's text is C{text}: a message the server delivered (not one of the
        reader's still on its way), or a notice."""
        self.waitUntil(
            "Array.from(log.children).some(e => !e.classList.contains('unsettled') && "
            f"(e.querySelector('.text') || e).textContent === {json.dumps(text)})"
        )

    def entries(self) -> list[dict[str, Any]]:
        return self.driver.execute_script(ENTRIES)

    def texts(self, atLeast: int = 0) -> list[str]:
        """The text of every entry (a message's text without its name and time), once there
        are at least C{atLeast}."""
        self.waitUntil(f"log.children.length >= {atLeast}")
        return [entry["text"] for entry in self.entries()]

    def element(self, elementId: str) -> WebElement:
        return self.driver.find_element(By.ID, elementId)

    @property
    def input(self) -> WebElement:
        return self.element("msg")

    def type(self, text: str) -> None:
        self.input.send_keys(text, Keys.ENTER)

    def layoutFaults(self) -> list[str]:
        return self.driver.execute_script(LAYOUT_FAULTS)

    def say(self, text: str) -> None:
        """Type and wait until the message came back from the server."""
        self.type(text)
        self.waitForText(text)

