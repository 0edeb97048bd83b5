from __future__ import annotations

import pytest

from txchat.origin import OriginPolicy


def test_no_origin_header_is_not_a_browser_and_is_allowed() -> None:
    assert OriginPolicy().allows(None, "chat.example")


@pytest.mark.parametrize(
    "origin, host, allowed",
    [
        ("http://chat.example", "chat.example", True),
        ("https://chat.example", "chat.example", True),  # scheme is not compared
        ("http://Chat.Example:8080", "chat.example:8080", True),
        ("http://chat.example:8081", "chat.example:8080", False),
        ("http://evil.example", "chat.example", False),
        ("null", "chat.example", False),
    ],
)
def test_same_host_rule(origin: str, host: str, allowed: bool) -> None:
    assert OriginPolicy().allows(origin, host) is allowed


def test_extra_origins_with_and_without_scheme() -> None:
    policy = OriginPolicy(["https://app.example", "other.example:9000"])
    assert policy.allows("https://app.example", "chat.example")
    assert not policy.allows("http://app.example", "chat.example")
    assert policy.allows("http://other.example:9000", "chat.example")
    assert not policy.allows("http://other.example", "chat.example")


def test_star_allows_all() -> None:
    assert OriginPolicy(["*"]).allows("http://anything.example", "chat.example")


@pytest.mark.parametrize("bad", ["", "https://", "http://a.example/path", "two words"])
def test_malformed_extra_origin_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        OriginPolicy([bad])
