"""The hub: the one WebSocketServerFactory that registers every chat client and broadcasts.

It knows nothing of HTTP: the web resource hands it connections. Broadcasting is batched:
every message accepted while the reactor is busy goes out in one flush, as soon as the
reactor is free, framed once for all clients that keep up (see L{txchat.fanout}).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from txchat.autobahn_internals import protocolWithOptions, useClock
from txchat.broker import Broker, LocalBroker
from txchat.config import Config
from txchat.fanout import Fanout
from txchat.limits import ConnectionLimits, TrustedProxies
from txchat.metrics import Metrics
from txchat.origin import OriginPolicy
from txchat.protocol import CLOSE_GOING_AWAY, CLOSE_POLICY, ChatProtocol

_log = Logger()

class ChatHub(WebSocketServerFactory):
    protocol: type[ChatProtocol] = ChatProtocol  # type: ignore[assignment]

    def __init__(self, config: Config, reactor: IReactorTime, broker: Broker | None = None) -> None:
        super().__init__(reactor=reactor)
        self.config = config
        self.clock = reactor
        self.origins = OriginPolicy(config.allowedOrigins)
        self.proxies = TrustedProxies(config.trustedProxies)
        self.limits = ConnectionLimits(config.maxConnections, config.maxConnectionsPerIp)
        self.metrics = Metrics()
        self.setProtocolOptions(
            versions=[13],
            webStatus=False,
            # Close frames with 1009/1007/1003 for bad messages; Autobahn's default would drop
            # the TCP connection, and the client would see only 1006.
            failByDrop=False,
            maxMessagePayloadSize=config.maxMessageSize,
            openHandshakeTimeout=config.handshakeTimeout,
            closeHandshakeTimeout=config.closeTimeout,
            autoPingInterval=0,
        )
        useClock(self, reactor)
        self.protocol = protocolWithOptions(self, type(self).protocol)
        self._fanout: Fanout[ChatProtocol] = Fanout(config.sendQueue, self._frame)
        self._flushCall: IDelayedCall | None = None
        self.broker: Broker = broker if broker is not None else LocalBroker()
        self._connections: set[ChatProtocol] = set()
        self._closing = False
        self._allGone: list[Deferred[None]] = []
        self.metrics.watch(
            connections=lambda: len(self._connections),
            brokerUp=lambda: float(self.broker.up),
            backlog=lambda: self.broker.backlog,
            refused=lambda: self.broker.dropped,
        )

    def _frame(self, payload: bytes) -> bytes:
        return self.prepareMessage(payload).payloadHybi

    # -- membership -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._fanout)

    def admit(self, client: ChatProtocol, address: str) -> str | None:
        """Count a handshake in against the connection limits, or say why it may not."""
        reason = "shutting-down" if self._closing else self.limits.admit(address)
        self.metrics.handshakes.labels("refused-" + reason if reason else "accepted").inc()
        return reason

    def refused(self, reason: str) -> None:
        self.metrics.handshakes.labels("refused-" + reason).inc()

    def health(self) -> tuple[int, str]:
        """For load balancers: 200 while serving; what the broker is doing, if there is one."""
        if self._closing:
            return 503, "shutting down"
        state = self.broker.state
        return 200, "ok" if state is None else f"ok\nredis: {state}"

    def register(self, client: ChatProtocol) -> None:
        self._connections.add(client)
        if self._closing:
            client.leave(CLOSE_GOING_AWAY, "server shutting down")
            return
        self._fanout.add(client, client.write)
        if client.behind:
            self._fanout.pause(client)

    def unregister(self, client: ChatProtocol) -> None:
        """Stop all output to the client; it is closing."""
        self._fanout.remove(client)

    def disconnected(self, client: ChatProtocol, admittedAs: str | None) -> None:
        self._fanout.remove(client)
        self._connections.discard(client)
        if admittedAs is not None:
            self.limits.release(admittedAs)
        if self._closing and not self._connections:
            waiting, self._allGone = self._allGone, []
            for d in waiting:
                if not d.called:  # not already fired by the shutdown timeout
                    d.callback(None)

    def paused(self, client: ChatProtocol) -> None:
        self._fanout.pause(client)

    def resumed(self, client: ChatProtocol) -> None:
        sent = self._fanout.resume(client)
        if sent:
            self.metrics.deliveries.inc(sent)
            self.metrics.frames.inc()

    # -- messages -------------------------------------------------------------------------

    def startBroker(self) -> None:
        self.broker.start(self.deliver)

    def broadcast(self, message: bytes) -> None:
        """Accept a normalised message from a client."""
        self.metrics.messagesIn.inc()
        self.broker.publish(message)

    def deliver(self, message: bytes) -> None:
        """Queue a message from the broker for every client; one flush per reactor turn."""
        if self._fanout.publish(message):
            self._flushCall = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flushCall = None
        started = perf_counter()
        messages, ready = self._fanout.pending, self._fanout.ready
        dropped = self._fanout.flush()
        metrics = self.metrics
        metrics.flushSeconds.observe(perf_counter() - started)
        metrics.deliveries.inc(messages * ready)
        metrics.frames.inc(ready)
        for client in dropped:
            metrics.slowDropped.inc()
            _log.info(
                "dropped slow client {peer}: more than {limit} messages waiting",
                peer=client.peerName,
                limit=self.config.sendQueue,
            )
            client.leave(CLOSE_POLICY, "too slow: send queue full")

    # -- shutdown -------------------------------------------------------------------------

    def closeAll(self) -> Deferred[None]:
        """Send what is pending, close every client with 1001, and fire once all are gone."""
        self._closing = True
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flush()
        for client in list(self._connections):
            client.leave(CLOSE_GOING_AWAY, "server shutting down")
        if not self._connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._allGone.append(d)
        d.addTimeout(self.config.shutdownTimeout, self.clock, onTimeoutCancel=self._cutRemaining)
        return d

    def _cutRemaining(self, result: Any, timeout: float) -> None:
        for client in list(self._connections):
            _log.info("cut {peer}: no close reply within {timeout}s", peer=client.peerName, timeout=timeout)
            client.transport.abortConnection()


class HubService(Service):
    """Starts the hub's broker with the service and closes every client when it stops."""

    def __init__(self, hub: ChatHub) -> None:
        self.hub = hub

    def startService(self) -> None:
        super().startService()
        self.hub.startBroker()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d = self.hub.closeAll()
        d.addCallback(lambda _: self.hub.broker.stop())
        return d
