"""The private parts of Twisted that txchat uses (txchat/twisted_internals.py), checked one by
one against the real Twisted: when a release changes one of them, the test named for it fails
here. These are the HTTP ones, on a string transport (the transport ones: tests/live)."""

from __future__ import annotations

from typing import TypeVar

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from txchat import twisted_internals


# -- HTTP, on a string transport ------------------------------------------------------------


class _Echo(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[bytes] = []

    def render(self, request: Request) -> bytes:
        body = request.content.read() if request.content is not None else b""
        self.rendered.append(body)
        return body


_Channel = TypeVar("_Channel", bound=HTTPChannel)


def _built(site: Site, protocol: type[_Channel]) -> _Channel:
    """The site's channel, of C{protocol} (Twisted annotates buildProtocol with its own
    default channel, whatever the site's protocol is)."""
    site.protocol = protocol  # type: ignore[assignment]
    channel = site.buildProtocol(None)
    assert isinstance(channel, protocol)
    return channel


def _channel(
    protocol: type[_Channel], requestFactory: type[Request] | None = None,
) -> tuple[_Channel, StringTransport, _Echo]:
    resource = _Echo()
    channel = _built(Site(resource, requestFactory=requestFactory, reactor=Clock()), protocol)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, resource


def _get(*headers: bytes) -> bytes:
    return b"\r\n".join([b"GET / HTTP/1.1", b"Host: x", *headers]) + b"\r\n\r\n"


@pytest.mark.parametrize("limited", [True, False])
def test_limitHeaders_sets_what_HTTPChannel_counts_the_request_head_against(limited: bool) -> None:
    channel, transport, _ = _channel(HTTPChannel)
    if limited:
        twisted_internals.limitHeaders(channel, 100)
    channel.dataReceived(_get(*[b"X-%d: %s" % (i, b"a" * 40) for i in range(3)]))
    status = transport.value().split(b"\r\n")[0]
    assert status == (b"HTTP/1.1 400 Bad Request" if limited else b"HTTP/1.1 200 OK")
    channel.connectionLost(None)


@pytest.mark.parametrize("length, answered", [(18000, True), (21000, False)])
def test_limitHeaders_raises_the_line_bound_MAX_LENGTH_with_it(length: int, answered: bool) -> None:
    """A line over Twisted's own MAX_LENGTH passes once the bound is raised; one over the new
    bound goes to LineReceiver's lineLengthExceeded, whose default closes the connection."""
    assert HTTPChannel.MAX_LENGTH < 18000
    channel, transport, _ = _channel(HTTPChannel)
    twisted_internals.limitHeaders(channel, 20000)
    channel.dataReceived(_get(b"X-Long: " + b"a" * length))
    assert transport.value().startswith(b"HTTP/1.1 200 OK") == answered
    assert transport.disconnecting != answered
    channel.connectionLost(None)


class _Hooks(twisted_internals.ChannelHooks):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def contentReceived(self) -> None:
        self.events.append("content")

    def awaitingRequest(self) -> None:
        self.events.append("awaiting")


def test_ChannelHooks_see_allContentReceived_before_the_request_runs_and_requestDone() -> None:
    channel, transport, resource = _channel(_Hooks)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab")
    assert channel.events == [] and resource.rendered == [], "the body is not in yet"
    channel.dataReceived(b"c")
    assert resource.rendered == [b"abc"]
    assert channel.events == ["content", "awaiting"], "content in, run, answered: in that order"
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert channel.events == ["content", "awaiting"]
    channel.dataReceived(b"0\r\n\r\n")
    assert channel.events == ["content", "awaiting", "content", "awaiting"]
    channel.dataReceived(_get(b"Connection: close"))
    assert len(resource.rendered) == 3
    assert channel.events[4:] == ["content"], "awaiting a request on a closing connection"
    assert transport.disconnecting
    channel.connectionLost(None)


class _Held(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Request] = []

    def render(self, request: Request) -> int:
        self.waiting.append(request)
        return NOT_DONE_YET


def test_ChannelHooks_await_the_next_request_before_requestDone_runs_those_pipelined() -> None:
    held = _Held()
    channel = _built(Site(held, reactor=Clock()), _Hooks)
    channel.makeConnection(StringTransport())
    channel.dataReceived(_get() + _get())
    assert channel.events == ["content"], "the second waits for the first's answer"
    held.waiting.pop().finish()
    assert channel.events == ["content", "awaiting", "content"]
    held.waiting.pop().finish()
    assert channel.events == ["content", "awaiting", "content", "awaiting"]
    channel.connectionLost(None)


class _Limited(twisted_internals.BodyLimit):
    maxBodySize = 10
    refused: list[int] = []

    def bodyTooLarge(self) -> None:
        self.refused.append(self._received)
        self.channel.loseConnection()


@pytest.mark.parametrize("body, refusedAt", [(b"0123456789", None), (b"0123456789a", 0)])
def test_BodyLimit_sees_gotLength_before_the_body(body: bytes, refusedAt: int | None) -> None:
    _Limited.refused = []
    channel, transport, resource = _channel(HTTPChannel, requestFactory=_Limited)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert _Limited.refused == ([] if refusedAt is None else [refusedAt])
    channel.dataReceived(body)
    assert resource.rendered == ([body] if refusedAt is None else [])
    channel.connectionLost(None)


def test_BodyLimit_counts_handleContentChunk_and_stops_requestReceived() -> None:
    _Limited.refused = []
    channel, transport, resource = _channel(HTTPChannel, requestFactory=_Limited)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    channel.dataReceived(b"6\r\n012345\r\n")
    assert _Limited.refused == []
    channel.dataReceived(b"6\r\n6789ab\r\n")
    assert _Limited.refused == [12]
    channel.dataReceived(b"0\r\n\r\n")
    assert resource.rendered == [], "a refused request was run"
    channel.connectionLost(None)


def test_BodyLimit_passes_a_body_within_the_bound_in_chunks() -> None:
    _Limited.refused = []
    channel, transport, resource = _channel(HTTPChannel, requestFactory=_Limited)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"6\r\n012345\r\n4\r\n6789\r\n0\r\n\r\n")
    assert _Limited.refused == [] and resource.rendered == [b"0123456789"]
    channel.connectionLost(None)


class _Keeps(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> bytes:
        self.requests.append(request)
        return b"ok"


def test_combinedLogLine_shows_the_uri_and_referrer_given_where_combinedLogFormatter_reads_them() -> None:
    resource = _Keeps()
    channel = _built(Site(resource, reactor=Clock()), HTTPChannel)
    channel.makeConnection(StringTransport())
    channel.dataReceived(_get(b"Referer: http://x/room/a?token=secret-r", b"User-Agent: ua")
                         .replace(b"GET / ", b"GET /ws?token=secret-u "))
    [request] = resource.requests
    timestamp = "[30/Nov/2026:20:00:00 +0000]"
    assert twisted_internals.combinedLogLine(timestamp, request, request.uri, request.getHeader(b"referer")) \
        == http.combinedLogFormatter(timestamp, request), "the stand-in changed more than the two answers"
    line = twisted_internals.combinedLogLine(timestamp, request, b"/ws", b"http://x/room/a")
    assert '"GET /ws HTTP/1.1" 200 2 "http://x/room/a" "ua"' in line
    assert "secret" not in line
    channel.connectionLost(None)

