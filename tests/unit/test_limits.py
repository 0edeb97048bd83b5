"""Connection limits, the token bucket and trusted proxies on plain values."""

from __future__ import annotations

import pytest

from txchat.limits import ConnectionLimits, RateLimits, TokenBucket, TrustedProxies


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.clientAddress("203.0.113.9", "1.2.3.4") == "203.0.113.9"  # not a proxy of ours
    assert proxies.clientAddress("127.0.0.1", None) == "127.0.0.1"
    assert proxies.clientAddress("127.0.0.1", "198.51.100.7") == "198.51.100.7"
    # A client may forge the left part; the right-most address our proxies did not add wins.
    assert proxies.clientAddress("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3") == "198.51.100.7"
    assert proxies.clientAddress("127.0.0.1", "10.1.1.1, 10.2.2.2") == "127.0.0.1"
    assert proxies.clientAddress("127.0.0.1", "not-an-address") == "127.0.0.1"
    assert proxies.clientAddress("127.0.0.1", "2001:db8::1") == "2001:db8::1"
    with pytest.raises(ValueError):
        TrustedProxies(["proxy.example"])


def test_connection_limits_count_in_and_out() -> None:
    limits = ConnectionLimits(total=3, perAddress=2)
    assert limits.admit("a") is None and limits.admit("a") is None
    assert limits.admit("a") == "max-connections-per-ip"
    assert limits.admit("b") is None
    assert limits.admit("c") == "max-connections"
    limits.release("a")
    assert limits.admit("c") is None
    assert ConnectionLimits(0, 0).admit("x") is None


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) is True  # one token back after half a second
    assert bucket.take(0.5) is False
    assert [bucket.take(100) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_rate_limits_share_a_user_s_bucket_while_any_of_their_connections_holds_it() -> None:
    limits = RateLimits(rate=2, burst=3)
    first, second = limits.acquire("u", 0), limits.acquire("u", 5)
    assert first is not None and first is second
    assert limits.acquire("v", 0) is not first
    assert len(limits) == 2
    limits.release("u")
    assert "u" in limits
    limits.release("u")
    assert "u" not in limits and len(limits) == 1
    fresh = limits.acquire("u", 9)
    assert fresh is not None and fresh is not first and fresh.tokens == 3


def test_rate_limits_without_a_user_or_without_a_rate() -> None:
    limits = RateLimits(rate=2, burst=3)
    a, b = limits.acquire(None, 0), limits.acquire(None, 0)
    assert a is not None and b is not None and a is not b
    assert len(limits) == 0
    limits.release(None)
    assert RateLimits(rate=0, burst=3).acquire("u", 0) is None
    assert len(RateLimits(rate=0, burst=3)) == 0


def test_a_bucket_says_when_its_next_token_comes() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert bucket.retryAfter() == 0.0
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retryAfter() == 0.5
    assert bucket.take(0.2) is False
    assert bucket.retryAfter() == pytest.approx(0.3)
    assert bucket.take(0.5) is True
