"""One chat connection: its handshake to the gate, normalise what the client sends, keep it alive.

The protocol holds no chat state; it asks the hub's gate whether to take the handshake, hands
messages to its factory, the hub, and tells the hub when the client stops or starts taking data.

Output goes straight to the socket while nothing is waiting in the transport: one send call,
and no round through the reactor, per client and flush. Only what the socket does not take is
handed to the transport, and from then on the client is *behind* until the transport has
drained it all. The protocol knows when that is because it is registered as the transport's
pull producer, which Twisted resumes each time its buffer empties.

Where bytes must pass through the transport (TLS), the protocol is its push producer instead:
the client is behind from the transport's pauseProducing to its resumeProducing. (A pull
producer there would be polled without end by TLS's pull-to-push adapter.)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall, IPullProducer, IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txchat.autobahn_internals import (
    ServerProtocol,
    cancelCloseTimer,
    dropConnection,
    failConnection,
    feed,
    isOpen,
    requestUri,
    sendCloseFrame,
    setMaxMessageSize,
)
from txchat import commands, wire
from txchat.broker import NotPublished
from txchat.chatlog import LogError, Page
from txchat.gate import Handshake, Refusal, Ticket
from txchat.limits import MAX_FRAGMENTS, TokenBucket
from txchat.tokens import TokenRefused
from txchat.twisted_internals import directSend
from txchat.wire import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNSUPPORTED_DATA,
    describePeer,
    normalise,
    normaliseLines,
)

if TYPE_CHECKING:
    from txchat.hub import ChatHub
    from txchat.rooms import Room


_log = Logger()

# The largest frame a txchat.v2 client may send: a send's text over --max-message-size is
# answered with an error line; only a frame beyond any command's size closes (1009).
MAX_V2_FRAME = 64 * 1024
RATE_LIMITED = "rate-limited"
UNAVAILABLE = "unavailable"


@implementer(IPullProducer, IPushProducer)
class ChatProtocol(ServerProtocol):
    factory: ChatHub

    peerName = "-"
    # The room the hub admitted this client to, whether it speaks txchat.v1 (or v2, a v1 with
    # commands: both are true then), what it asked for, who its messages are from.
    room: Room | None = None
    v1 = False
    v2 = False
    sender = ""
    displayName = ""
    since: tuple[str, int] | None = None
    # What the gate admitted this connection as (None: not admitted).
    ticket: Ticket[Room] | None = None
    _opened = False
    _member = False
    # TCP, TLS or UNIX: a transport and a consumer, at times a socket's too.
    transport: Any
    # How to reach the socket directly; a seam for in-memory tests.
    directSend = staticmethod(directSend)
    # Not Autobahn's _send, a method of its own that this must not shadow.
    _socketSend: Callable[[bytes], int] | None = None
    # Bytes of ours wait in the transport: until it drains, more must queue behind them.
    behind = True
    _registering = False
    # The address this connection counts against (the client's, even behind a trusted proxy).
    _admittedAs: str | None = None
    _bucket: TokenBucket | None = None
    _fragments = 0  # frames of the message coming in
    _lastHeard = 0.0
    # When the client's signed identity expires (seconds since the Unix epoch, as the clock says).
    _expires = math.inf
    _nextPing = 0.0
    _keepalive: IDelayedCall | None = None
    # Why this side cut the connection without a close frame (its disconnect line says so).
    _cut: str | None = None
    _writeTimer: IDelayedCall | None = None
    _refusedByGate = False
    _lastTyping = -math.inf  # when a typing command was last relayed (v2)
    # What came before the handshake was let in (txchat.lobby), while it queues.
    _waiting: bytearray | None = None
    _handedOver = False  # bytes now go straight to Autobahn's parser

    def connectionMade(self) -> None:
        self.peerName = describePeer(self.transport.getPeer())
        self._lastHeard = self.factory.clock.seconds()
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        # Autobahn's own dataReceived builds a debug line for every read: skip it, and note
        # that the client is alive (any traffic counts, as with the gorilla chat's read deadline).
        self._lastHeard = self.factory.clock.seconds()
        if self._handedOver:
            feed(self, data)
        elif self._waiting is not None:
            self._waiting += data
            if len(self._waiting) > self.factory.config.maxHeaderSize:
                # Frames before the handshake's answer (RFC 6455 says wait): not kept here unread.
                self._letIn(self.factory.lobby.leave(self._letIn))
        elif self.factory.gate.full:  # the handshake, to be refused: at once, as cheaply as ever
            self._handedOver = True
            feed(self, data)
        else:  # the handshake
            self._waiting = bytearray(data)
            self.factory.lobby.enter(self._letIn)

    def _letIn(self, waited: float) -> None:
        """The lobby's turn for this handshake: at once on a hub with nothing to send."""
        waiting, self._waiting = self._waiting, None
        self._handedOver = True
        if waited > self.factory.config.handshakeTimeout:  # its deadline, spent queueing: try again
            _log.debug("refused {peer}: its handshake waited {waited:.1f}s", peer=self.peerName, waited=waited)
            self.transport.write(wire.BUSY_RESPONSE)
            self.transport.loseConnection()  # (which stops reading)
        elif waiting:
            feed(self, bytes(waiting))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._waiting is not None:
            self._waiting = None
            self.factory.lobby.leave(self._letIn)
        super().connectionLost(reason)

    # -- opening --------------------------------------------------------------------------

    @property
    def member(self) -> bool:
        """Open, and not yet leaving."""
        return self._member

    def onConnect(self, request: ConnectionRequest) -> str | None:
        """Ask the gate; the subprotocol's name when the client speaks txchat.v1."""
        headers = request.headers
        verdict = self.factory.gate.admit(Handshake(
            path=request.path,
            protocols=request.protocols,
            uri=requestUri(self),
            origin=headers.get("origin"),
            host=headers.get("host"),
            peerHost=getattr(self.transport.getPeer(), "host", "unix"),
            forwardedFor=headers.get("x-forwarded-for"),
            peerName=self.peerName,
        ))
        if isinstance(verdict, Refusal):
            self._refusedByGate = True  # the gate has said why in the log
            raise ConnectionDeny(verdict.status, verdict.reason)
        self.ticket = verdict
        self.room, self.v1, self.displayName, self.since = verdict.place, verdict.v1, verdict.name, verdict.since
        self.v2, self.sender = verdict.v2, verdict.sender
        if self.v2:
            # Over-long texts are refused with an error line that keeps the connection; only
            # frames no client of ours would send close it.
            setMaxMessageSize(self, MAX_V2_FRAME)
        self._expires = verdict.expires
        self._admittedAs = verdict.address
        self.peerName = verdict.peerName
        return verdict.subprotocol

    def handshakeRefused(self, status: int, reason: str) -> None:
        # One line a refusal: the gate's, or this one for what Autobahn refuses itself (a
        # malformed handshake), whose own lines are silenced (L{txchat.logtext}).
        if not self._refusedByGate:
            _log.info("refused {peer}: {status} {reason}", peer=self.peerName, status=status, reason=reason)

    def onOpen(self) -> None:
        try:
            config = self.factory.config
            # WebSocketResource leaves the HTTP channel registered as the transport's producer.
            self.transport.unregisterProducer()
            self._socketSend = self.directSend(self.transport)
            if self._socketSend is not None:
                # The 101 response is still in the transport: stay behind until it drains, and
                # ignore the resumeProducing that registering a pull producer calls at once.
                self.behind = True
                self._registering = True
                self.transport.registerProducer(self, False)
                self._registering = False
            else:
                self.behind = False
                self.transport.registerProducer(self, True)
            self._bucket = self.factory.rateLimits.acquire(self._subject, self.factory.clock.seconds())
            self._opened = self._member = True
            now = self.factory.clock.seconds()
            self._nextPing = now + config.pingInterval
            self._keepalive = self.factory.clock.callLater(
                max(0.0, min(config.pingInterval, config.pongTimeout, self._expires - now)), self._tick
            )
            _log.info("connect {peer}", peer=self.peerName)
            self.factory.register(self)
        except Exception:
            _log.failure("could not open {peer}", peer=self.peerName)
            dropConnection(self)

    @property
    def _subject(self) -> str | None:
        """The signed identity's user, whose connections share a rate limit."""
        return self.ticket.subject if self.ticket is not None else None

    # -- messages -------------------------------------------------------------------------

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._fragments = 0
        if isBinary:
            # Autobahn's own path for failing a connection, as it takes for 1007 and 1009.
            failConnection(self, CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted")

    def onMessageFrameBegin(self, length: int) -> None:
        # Autobahn's streaming API calls this for every frame of a message, the first included.
        super().onMessageFrameBegin(length)
        self._fragments += 1
        if self._fragments > MAX_FRAGMENTS and isOpen(self):
            failConnection(self, CLOSE_MESSAGE_TOO_BIG, f"a message in more than {MAX_FRAGMENTS} frames")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not self._member:
            return  # closing: what still arrives is not chat any more
        if self.v2:
            self._command(commands.parse(payload, self.factory.config.maxMessageSize))
            return
        if self._bucket is not None and not self._bucket.take(self.factory.clock.seconds()):
            self.factory.metrics.rateLimited.inc()
            self.leave(CLOSE_POLICY, "rate limit exceeded")
            return
        # txchat.v1 senders' text keeps its line breaks and loses other C0 controls
        # (txchat/wire.py); a seed client's text is the seed's.
        message = normaliseLines(payload) if self.v1 else normalise(payload)
        if message:
            self.factory.broadcast(self, message)

    # -- txchat.v2 commands (SPEC §17) ------------------------------------------------------

    def _command(self, command: commands.Command | commands.Refused) -> None:
        hub = self.factory
        if isinstance(command, commands.Send):
            if self._allowed(command.id):
                hub.post(self, command.text, command.id).addCallbacks(
                    self._acked, self._notPosted, callbackArgs=(command.id,), errbackArgs=(command.id,))
        elif isinstance(command, commands.Refused):
            extra = {} if command.limit is None else {"limit": command.limit}
            self._refuse(command.id, command.code, command.message, **extra)
        elif isinstance(command, commands.Typing):
            now = hub.clock.seconds()
            if now - self._lastTyping >= commands.TYPING_EVERY:
                self._lastTyping = now
                hub.typing(self)
        elif isinstance(command, commands.HistoryAsk):
            if self._allowed(command.id) and self.room is not None:
                hub.history(self.room.name, command.before, command.limit).addCallbacks(
                    self._paged, self._notPosted, callbackArgs=(command.id,), errbackArgs=(command.id,))
        elif isinstance(command, commands.Read):
            refused = hub.setRead(self, command.epoch, command.seq)
            if refused is not None:
                self._refuse(command.id, commands.BAD_REQUEST, refused)
        else:
            self._refresh(command)

    def _allowed(self, ref: str) -> bool:
        """Take one from the rate limit's bucket, or answer rate-limited: the send is dropped,
        and the client told when to try again."""
        bucket = self._bucket
        if bucket is None or bucket.take(self.factory.clock.seconds()):
            return True
        self.factory.metrics.rateLimited.inc()
        wait = math.ceil(bucket.retryAfter() * 1000)
        self._refuse(ref, RATE_LIMITED, f"too many messages: try again in {wait} ms", retryAfter=wait)
        return False

    def _acked(self, numbered: tuple[str, int] | None, ref: str) -> None:
        epoch, seq = numbered if numbered is not None else (None, None)
        self.factory.reply(self, wire.ack(ref, epoch, seq))

    def _paged(self, page: Page, ref: str) -> None:
        lines = [wire.withEpoch(m.line, m.epoch) for m in page.messages]
        self.factory.reply(self, wire.history(ref, lines, page.more))

    def _notPosted(self, failure: Failure, ref: str) -> None:
        if not failure.check(NotPublished, LogError):
            _log.failure("could not serve {peer}", failure, peer=self.peerName)
        self._refuse(ref, UNAVAILABLE, "the chat cannot take this now: try again")

    def _refresh(self, command: commands.Refresh) -> None:
        """A new token for the same user: the connection lives until its C{exp}."""
        tokens = self.factory.gate.tokens
        ticket = self.ticket
        if tokens is None or ticket is None or ticket.subject is None:
            self._refuse(command.id, commands.BAD_REQUEST, "refresh: this connection has no signed identity")
            return
        try:
            identity = tokens.check(command.token, ticket.room)
        except TokenRefused as e:
            self._refuse(command.id, commands.BAD_REQUEST, f"refresh: {e}")
            return
        if identity.subject != ticket.subject:
            self._refuse(command.id, commands.BAD_REQUEST, "refresh: the token is for another user")
            return
        self._expires = max(self._expires, identity.expires)
        self.factory.reply(self, wire.refreshed(self._expires, command.id))

    def _refuse(self, ref: str | None, code: str, message: str, **extra: Any) -> None:
        self.factory.reply(self, wire.error(ref, code, message, **extra))

    # -- output ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send now if nothing waits before this; what the socket does not take waits in the
        transport, and the client is behind until that has drained. Autobahn's own frames
        (handshake, pings, pongs, closes) come here too (L{ServerProtocol.sendData})."""
        if self._socketSend is None:
            self.transport.write(data)  # through TLS: the transport says when it is full
            return
        if not self.behind:
            try:
                sent = self._socketSend(data)
            except OSError:  # EAGAIN, or a broken connection the transport will report
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self.transport.write(data)
        self.pauseProducing()

    def pauseProducing(self) -> None:
        """Output is waiting in the transport (IPushProducer, or our own short send)."""
        if self.behind:
            return
        self.behind = True
        if self._member:
            self._writeTimer = self.factory.clock.callLater(self.factory.config.writeTimeout, self._writeTimedOut)
            self.factory.paused(self)

    def resumeProducing(self) -> None:
        """The transport has written everything it held."""
        if self._registering or not self.behind:
            return
        self.behind = False
        if self._writeTimer is not None:
            self._writeTimer.cancel()
            self._writeTimer = None
        self.factory.resumed(self)

    def stopProducing(self) -> None:
        pass

    # -- timers ---------------------------------------------------------------------------

    def _tick(self) -> None:
        """Ping on schedule; close a client silent for the pong timeout. One timer a client."""
        self._keepalive = None
        config = self.factory.config
        clock = self.factory.clock
        now = clock.seconds()
        if now - self._lastHeard >= config.pongTimeout:
            self.leave(CLOSE_POLICY, "no pong")
            return
        if now >= self._expires:
            self.leave(CLOSE_TOKEN_EXPIRED, "token expired")
            return
        if now >= self._nextPing:
            self.sendPing()
            self._nextPing = now + config.pingInterval
        due = min(self._nextPing, self._lastHeard + config.pongTimeout, self._expires)
        self._keepalive = clock.callLater(due - now, self._tick)

    def _writeTimedOut(self) -> None:
        self._writeTimer = None
        self._cut = f"cut: output could not drain for {self.factory.config.writeTimeout:g}s"
        self._stopOutput()
        self.transport.abortConnection()

    # -- closing --------------------------------------------------------------------------

    def leave(self, code: int, reason: str) -> None:
        """End this client's chat output and start the closing handshake with C{code}.

        C{sendCloseFrame}, unlike Autobahn's C{sendClose}, takes 1001 and 1008."""
        if isOpen(self):
            sendCloseFrame(self, code, reason)
        else:
            self._stopOutput()

    def outputEnds(self) -> None:
        # Every close frame, ours or the reply to the client's, and every drop: nothing may
        # follow the close frame.
        self._stopOutput()

    def _stopOutput(self) -> None:
        if not self._member:
            return
        self._member = False
        self.factory.unregister(self)
        for timer in (self._keepalive, self._writeTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._keepalive = self._writeTimer = None
        self.transport.unregisterProducer()

    def onClose(self, wasClean: bool, code: int | None, reason: Any) -> None:
        self._stopOutput()
        if self._bucket is not None:
            self._bucket = None
            self.factory.rateLimits.release(self._subject)
        admittedAs, self._admittedAs = self._admittedAs, None
        cancelCloseTimer(self)
        self.factory.disconnected(self, admittedAs)
        if self._opened:
            # The code the connection was closed with: the close frame this side opened the
            # closing handshake with, else Autobahn's (the client's, or 1006 for none at all).
            if self.closedWith is not None and self.closedWith[0] is not None:
                code, reason = self.closedWith
            elif self._cut is not None:
                reason = self._cut
            _log.info("disconnect {peer}: code {code} {reason}", peer=self.peerName, code=code, reason=reason or "")
