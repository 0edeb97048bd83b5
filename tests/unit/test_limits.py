"""Connection limits, the token bucket and trusted proxies on plain values."""

from __future__ import annotations

import pytest

from txchat.limits import ConnectionLimits, TokenBucket, TrustedProxies


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
