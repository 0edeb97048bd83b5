"""Who a connection is from, how many each may have, and how fast a client may talk."""

from __future__ import annotations

import resource
from collections import Counter
from ipaddress import ip_address, ip_network
from typing import Iterable

# Open files kept for what is not an admitted WebSocket client: the listening sockets, the
# reactor's own, Redis, log files, a page or API request in flight, and (the larger part, a
# quarter of the limit) the handshakes of a connect storm that are accepted, a hundred and more
# a reactor turn, before those past the limit are answered 503.
FILES_HELD_BACK = 64

MAX_FRAGMENTS = 64
"""Frames one message may come in; a 65th closes the connection with 1009, as a message too big.

Without a bound, a client that sends empty continuation frames holds a message open for ever:
it never grows past --max-message-size and, never ending, never counts against --rate-limit.
Browsers send each message in one frame; client libraries that fragment do so at a buffer's
size (gorilla/websocket's is 4 KiB), so 64 frames carry 256 KiB from them, far past any chat
message. A constant, not an option: no honest client comes near it."""


def _isAddress(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


class TrustedProxies:
    """The proxies whose X-Forwarded-For is believed; anyone else's is ignored."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._networks = [ip_network(entry.strip(), strict=False) for entry in entries]

    def __contains__(self, host: str) -> bool:
        try:
            address = ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def clientAddress(self, peer: str, forwardedFor: str | None) -> str:
        """The address to hold a connection against: the peer's own, or, when the peer is a
        trusted proxy, the nearest address in X-Forwarded-For that is not one (each proxy
        appends the address it saw, so the list is read from the right)."""
        if not forwardedFor or peer not in self:
            return peer
        for hop in reversed([h.strip() for h in forwardedFor.split(",")]):
            if not _isAddress(hop):
                return peer  # a forged or broken list: fall back to what we know
            if hop not in self:
                return hop
        return peer


class ConnectionLimits:
    """Counts open connections, in all and per client address; 0 means no limit."""

    def __init__(self, total: int = 0, perAddress: int = 0) -> None:
        self.total = total
        self.perAddress = perAddress
        self.open = 0
        self._byAddress: Counter[str] = Counter()

    def admit(self, address: str) -> str | None:
        """Count a new connection in, or say why it may not come in."""
        if self.total and self.open >= self.total:
            return "max-connections"
        if self.perAddress and self._byAddress[address] >= self.perAddress:
            return "max-connections-per-ip"
        self.open += 1
        self._byAddress[address] += 1
        return None

    def release(self, address: str) -> None:
        self.open -= 1
        self._byAddress[address] -= 1
        if not self._byAddress[address]:
            del self._byAddress[address]


def raiseOpenFileLimit() -> int:
    """Raise the soft limit on open files to the hard one, as far as the system lets us, and
    return the soft limit in force: every connection is a file, and a process that runs out
    drops connections at the TCP level (EMFILE) before it can answer them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # an unlimited hard limit the kernel will not give (nr_open): keep the soft one
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connectionsWithin(maxConnections: int, openFiles: int) -> int | None:
    """The WebSocket clients that fit in C{openFiles} open files, if fewer than
    C{maxConnections} (0: no limit) allows; None when the asked limit fits. Refused with 503
    past it, a client is told; past the file limit, it would be dropped unanswered."""
    if openFiles == resource.RLIM_INFINITY:
        return None
    fits = max(1, openFiles - max(FILES_HELD_BACK, openFiles // 4))
    return fits if maxConnections == 0 or maxConnections > fits else None


class TokenBucket:
    """C{rate} messages a second on average, C{burst} at once."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def retryAfter(self) -> float:
        """Seconds until the next L{take} can succeed, as of the last one."""
        return max(0.0, (1 - self.tokens) / self.rate)


class RateLimits:
    """The buckets of --rate-limit: with signed identities, one for each user (the token's
    C{sub}), shared by all of that user's connections on this process, so that ten tabs do not
    get ten times the rate; without them, one for each connection, as the seed's clients had.

    A user's bucket is kept while any of their connections is open, and freed with the last:
    what is held is bounded by the connections. A connection keeps its bucket, so a message
    costs what it did before, one L{TokenBucket.take}."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._shared: dict[str, tuple[TokenBucket, int]] = {}  # sub -> (bucket, connections)

    def acquire(self, subject: str | None, now: float) -> TokenBucket | None:
        """The bucket for a connection opening now, of user C{subject} (None: not signed);
        None without a rate limit. Each acquired bucket is given back with L{release}."""
        if not self.rate:
            return None
        if subject is None:
            return TokenBucket(self.rate, self.burst, now)
        bucket, holders = self._shared.get(subject) or (TokenBucket(self.rate, self.burst, now), 0)
        self._shared[subject] = (bucket, holders + 1)
        return bucket

    def release(self, subject: str | None) -> None:
        """A connection that acquired a bucket has closed."""
        if subject is None:
            return
        bucket, holders = self._shared[subject]
        if holders > 1:
            self._shared[subject] = (bucket, holders - 1)
        else:
            del self._shared[subject]

    def __contains__(self, subject: str) -> bool:
        return subject in self._shared

    def __len__(self) -> int:
        """Users with a shared bucket."""
        return len(self._shared)
