"""The page's source, read as text: where it must say what the server says (the rule for room
names) and how it must show what people send (isolated for bidirectional text). Cheap checks of
the markup; how it behaves in a browser is tests/test_page.py's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from txchat import wire
from txchat.webapp import pagePath


PAGE = Path(pagePath()).read_text(encoding="utf-8")


def test_the_go_to_room_check_is_the_server_s_rule_and_says_it() -> None:
    found = re.search(r"const ROOM_NAME = /(.+)/;", PAGE)
    assert found, "the page's room-name pattern"
    pattern = re.compile(found.group(1))  # JavaScript's syntax here is Python's too
    for name in ["lobby", "a", "r" * 64, "a.b", ".a", "a..", "~.-", "", ".", "..", "." * 64, "r" * 65,
                 "two words", "caf\u00e9", "a/b", "a%2E"]:
        assert bool(pattern.search(name)) is wire.validRoom(name), name
    assert f'"{wire.ROOM_RULE}"' in PAGE, "the page's hint is the server's rule"


def _rules(css: str) -> dict[str, str]:
    """Each selector of a style sheet with the declarations it is given (media queries
    flattened: the page isolates in every one)."""
    rules: dict[str, str] = {}
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        for selector in selectors.split(","):
            key = " ".join(selector.split())
            rules[key] = rules.get(key, "") + body
    return rules


def test_names_and_texts_are_isolated_for_bidirectional_text() -> None:
    style = re.search(r"<style>(.*?)</style>", PAGE, re.S)
    assert style, "the page's style sheet"
    css = style.group(1)
    rules = _rules(css)
    for element in ("name", "text"):
        declarations = rules.get(f".msg .{element}", "")
        assert re.search(r"unicode-bidi:\s*isolate\b", declarations), f".msg .{element}: {declarations!r}"
        assert f'className = {"name ? " if element == "name" else ""}"{element}' in PAGE, \
            f"the page gives its {element} elements the class"
