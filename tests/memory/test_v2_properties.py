"""Property test of txchat.v2's promise (SPEC §17), one process: for any interleaving of sends,
cuts, reconnects with ``since``, resends of what was not acknowledged and a broker that answers
late, every ID is delivered exactly once to every other client, in each sender's order, and
each ack carries the number the others saw.

Real protocols over in-memory transports, every timer on a task.Clock; the broker numbers
only when the test lets it answer (as Redis does, a round trip later)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.support.memory import MemoryHub, V1Peer, V2Peer
from txchat.broker import MemoryBroker
from txchat.config import Config
from txchat.stream import Delivery

SENDERS = 2

actions = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, SENDERS - 1)),
        st.tuples(st.just("send"), st.integers(0, SENDERS - 1)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("answer"), st.just(0)),
        st.tuples(st.just("cut"), st.integers(0, SENDERS - 1)),
        st.tuples(st.just("back"), st.integers(0, SENDERS - 1)),
        st.tuples(st.just("resend"), st.integers(0, SENDERS - 1)),  # an impatient client
    ),
    min_size=5,
    max_size=50,
)


class LateBroker(MemoryBroker):
    """The memory broker, answering each post only when the test says (a Redis round trip)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock, 10_000, 86400)
        self.held: list[tuple[Delivery, Deferred[tuple[str, int] | None]]] = []

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        d: Deferred[tuple[str, int] | None] = Deferred()
        self.held.append((message, d))
        return d

    def answer(self) -> None:
        held, self.held = self.held, []
        for message, d in held:
            super().post(message).chainDeferred(d)


class Sender:
    """A v2 client that resends what was not acknowledged after each reconnect."""

    def __init__(self, hub: MemoryHub, index: int) -> None:
        self.hub = hub
        self.cid = f"sender-{index:04d}"
        self.index = index
        self.next = 0
        self.unacked: list[str] = []
        self.acks: dict[str, int] = {}
        self.epoch = ""
        self.seq = 0
        self.peer: V2Peer | None = None
        self.connect()

    def connect(self) -> None:
        query = f"cid={self.cid}" + (f"&since={self.epoch}:{self.seq}" if self.epoch else "")
        self.peer = V2Peer(self.hub, query=query)
        self.read()
        for ref in self.unacked:
            self.peer.post(ref, ref)

    def send(self) -> None:
        if self.peer is None:
            return
        ref = f"s{self.index}-{self.next}"
        self.next += 1
        self.unacked.append(ref)
        self.peer.post(ref, ref)

    def resend(self) -> None:
        if self.peer is not None:
            for ref in self.unacked:
                self.peer.post(ref, ref)

    def cut(self) -> None:
        if self.peer is not None:
            self.peer.transport.abortConnection()  # what it has not read is lost with it
            self.peer = None

    def read(self) -> None:
        if self.peer is None:
            return
        for line in self.peer.lines():
            if line["type"] == "welcome":
                if self.epoch:
                    assert line["recovered"] is True, "the room keeps everything: a resume recovers"
                else:
                    self.epoch = line["epoch"]  # and the whole history follows, from 1
            elif line["type"] == "message":
                assert line["seq"] == self.seq + 1, "the sender's own stream has no gap or duplicate"
                self.seq = line["seq"]
            elif line["type"] == "ack":
                ref = line["id"]
                if ref in self.acks:
                    assert self.acks[ref] == line["seq"], "a repeated ack repeats the first number"
                else:
                    self.acks[ref] = line["seq"]
                    self.unacked.remove(ref)
            assert line["type"] != "error", line


@settings(max_examples=150, deadline=None)
@given(actions)
def test_every_id_is_delivered_exactly_once_and_acked_with_the_number_others_saw(
    steps: list[tuple[str, int]],
) -> None:
    clock = Clock()
    broker = LateBroker(clock)
    hub = MemoryHub(Config(history=10_000, pingInterval=3600, pongTimeout=7200), clock, broker)
    hub.startBroker()
    watchers = [V1Peer(hub), V2Peer(hub)]
    seen: list[list[dict[str, Any]]] = [[] for _ in watchers]
    senders = [Sender(hub, i) for i in range(SENDERS)]

    def flush() -> None:
        clock.advance(0)
        for sender in senders:
            sender.read()
        for watcher, got in zip(watchers, seen):
            got.extend(line for line in watcher.lines() if line["type"] == "message")

    for action, index in steps:
        sender = senders[index]
        if action == "send":
            sender.send()
        elif action == "flush":
            flush()
        elif action == "answer":
            broker.answer()
        elif action == "cut":
            sender.cut()
        elif action == "back":
            if sender.peer is None:
                sender.connect()
        elif action == "resend":
            sender.resend()

    # In the end every client is back and resends until all is acknowledged.
    for _ in range(3):
        broker.answer()
        flush()
        for sender in senders:
            if sender.peer is None:
                sender.connect()
            else:
                sender.resend()
    broker.answer()
    flush()

    numbers: dict[str, int] = {}
    for got in seen:
        assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
        texts = [m["text"] for m in got]
        assert len(texts) == len(set(texts)), "no ID is delivered twice"
        numbers = {m["text"]: m["seq"] for m in got}
    for sender in senders:
        assert sender.unacked == []
        assert set(sender.acks) == {f"s{sender.index}-{i}" for i in range(sender.next)}
        for ref, seq in sender.acks.items():
            assert numbers[ref] == seq, "the ack's number is the one the others saw"
        mine = [numbers[f"s{sender.index}-{i}"] for i in range(sender.next)]
        assert mine == sorted(mine), "in the sender's order"
    assert all(m["from"] == f"a:{senders[int(m['text'][1])].cid}" for m in seen[0])
    assert seen[0] == seen[1]
