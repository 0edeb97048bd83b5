"""Property test of the room's stream: for any interleaving of publishes, flushes, joins,
leaves and reconnects with ``since``, every v1 client's stream is the room's stream from its
first line on (no gap, no duplicate), and ``recovered`` is true exactly when that is possible.

Real protocols over in-memory transports, every timer on a task.Clock."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.memory import Peer, V1Peer, makeHub
from txchat.broker import MemoryBroker
from txchat.hub import ChatHub
from txchat.rooms import Room


actions = st.lists(
    st.one_of(
        # Weighted towards clients that come and go: recovery is what is being tested.
        st.tuples(st.just("join"), st.just(0)),
        st.tuples(st.just("leave"), st.integers(0, 7)),
        st.tuples(st.just("back"), st.integers(0, 7)),
        st.tuples(st.just("say"), st.integers(0, 2)),  # the plain-protocol talker says a few messages
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("join"), st.just(0)),
        st.tuples(st.just("leave"), st.integers(0, 7)),
        st.tuples(st.just("back"), st.integers(0, 7)),  # a client that left comes back with since
        st.tuples(st.just("wait"), st.integers(1, 3)),  # seconds pass (history may expire)
    ),
    min_size=5,
    max_size=40,
)


class Client:
    def __init__(self, peer: V1Peer) -> None:
        self.peer = peer
        self.lines: list[dict[str, Any]] = []

    def read(self) -> None:
        if self.peer.open:
            self.lines += self.peer.lines()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["type"] == "message"]

    @property
    def welcome(self) -> dict[str, Any]:
        return self.lines[0]

    def since(self) -> str:
        last = self.messages[-1]["seq"] if self.messages else self.welcome["seq"]
        return f"{self.welcome['epoch']}:{last}"


@settings(max_examples=200, deadline=None)
@given(actions, st.integers(0, 4))
@example([("join", 0), ("flush", 0), ("leave", 0), ("say", 1), ("flush", 0), ("back", 0)], 4)
@example([("join", 0), ("say", 2), ("join", 0), ("flush", 0), ("leave", 1), ("say", 0), ("back", 0)], 2)
def test_every_client_sees_the_rooms_stream_without_gap_or_duplicate(steps: list[tuple[str, int]],
                                                                     history: int) -> None:
    hub, clock = makeHub(history=history, historyTtl=5, pingInterval=1e6, pongTimeout=1e6)
    talker = Peer(hub)
    stream: dict[str, list[str]] = {}  # epoch -> the texts numbered 1, 2, ... in it
    clients: list[Client] = []
    left: list[Client] = []
    said = 0

    def join(query: str = "") -> Client:
        client = Client(V1Peer(hub, query=query))
        clients.append(client)
        client.read()
        return client

    for action, n in steps:
        if action == "say":
            for _ in range(n + 1):
                said += 1
                talker.say(f"m{said}")
        elif action == "flush":
            clock.advance(0)
        elif action == "join":
            join()
        elif action == "leave" and clients:
            client = clients.pop(n % len(clients))
            clock.advance(0)
            client.read()
            client.peer.transport.abortConnection()
            left.append(client)
        elif action == "back" and left:
            gone = left.pop(n % len(left))
            room = hub.room("lobby")
            epoch, seq = gone.since().rsplit(":", 1)
            kept = [int(line["seq"]) for line in _historyOf(hub)] if room else []
            last = room.seq if room else 0
            possible = (room is not None and epoch == room.epoch and int(seq) <= last
                        and (int(seq) == last or (kept and kept[0] <= int(seq) + 1)))
            client = join(f"since={gone.since()}")
            assert client.welcome["recovered"] is bool(possible)
            if possible:
                assert (client.messages[0]["seq"] if client.messages else last) == (
                    int(seq) + 1 if client.messages else last)
        elif action == "wait":
            clock.advance(n)
        # The room's current epoch and its texts, as numbered.
        room = hub.room("lobby")
        for client in clients:
            client.read()
    clock.advance(0)
    for client in clients:
        client.read()
        stream.setdefault(client.welcome["epoch"], [])
    for client in clients:
        seqs = [m["seq"] for m in client.messages]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, "a gap or a duplicate"
        # Every message numbered in the client's epoch after its first line reached it.
        if seqs:
            assert seqs[-1] == _lastSeq(hub, client.welcome["epoch"], seqs[-1])
        texts = [m["text"] for m in client.messages]
        assert texts == [f"m{i}" for i in _numbers(texts)], "not in the room's order"
    talker.transport.abortConnection()
    for client in clients:
        client.peer.transport.abortConnection()


def _historyOf(hub: ChatHub) -> list[dict[str, Any]]:
    import json

    broker = hub.broker
    assert isinstance(broker, MemoryBroker), "a memory hub keeps its history in a MemoryBroker"
    return [json.loads(m.line) for m in broker.kept("lobby")]


def _lastSeq(hub: ChatHub, epoch: str, fallback: int) -> int:
    room = hub.room("lobby")
    return room.seq if room is not None and room.epoch == epoch else fallback


def _numbers(texts: list[str]) -> list[int]:
    numbers = [int(t[1:]) for t in texts]
    return list(range(numbers[0], numbers[0] + len(numbers))) if numbers else []
