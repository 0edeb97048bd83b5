"""Check what every client of a fault run saw against txchat's promises (README "Faults we
test"): one numbering per room, nothing twice, exact recovery, and every numbered message
reaching every client that stayed or recovered. Plain code over a list of events.

An event is a dict with ``c`` (client id), ``k`` (kind), ``conn`` (the client's connection
number) and ``t`` (seconds), and by kind:

- ``welcome``: ``room``, ``epoch``, ``seq``, ``recovered`` (None on a fresh join), ``since``
  ([epoch, seq] the client asked for, or None);
- ``msg``: ``room``, ``epoch`` (the connection's stream at the time), ``seq`` (None: delivered
  unnumbered, during a Redis outage), ``text``;
- ``sent``: ``room``, ``text`` (unique in the run);
- ``close``: ``why``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

Event = dict[str, Any]


@dataclass
class Violation:
    rule: str
    what: str
    excerpt: list[Event]

    def __str__(self) -> str:
        lines = [f"VIOLATION [{self.rule}] {self.what}"]
        lines += ["    " + " ".join(f"{k}={v!r}" for k, v in event.items()) for event in self.excerpt]
        return "\n".join(lines)


@dataclass
class Report:
    messages: int = 0  # distinct numbered messages (room, epoch, seq)
    unnumbered: int = 0  # deliveries without seq
    reconnects: int = 0
    unrecovered: int = 0  # reconnects that said recovered: false (a gap the client was told of)
    sent: int = 0
    accepted: int = 0  # sent and seen by anyone
    violations: list[Violation] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.messages} messages ({self.unnumbered} unnumbered deliveries), {self.sent} sent, "
                f"{self.accepted} accepted, {self.reconnects} reconnects ({self.unrecovered} not recovered), "
                f"{len(self.violations)} violations")


def _around(events: list[Event], index: int, before: int = 3, after: int = 1) -> list[Event]:
    return events[max(0, index - before): index + after + 1]


def check(events: Iterable[Event], finalClients: set[Any] | None = None) -> Report:
    """C{finalClients}: the clients connected when the run ended, each of which must have
    reached the end of its room's stream; by default every client whose last event is not a
    close."""
    byClient: dict[Any, list[Event]] = defaultdict(list)
    for event in events:
        byClient[event["c"]].append(event)
    report = Report()
    texts: dict[tuple[str, str, int], tuple[str, Event]] = {}  # (room, epoch, seq) -> first text seen
    places: dict[str, tuple[str, str, int, Event]] = {}  # text -> (room, epoch, seq) it was numbered with
    seen: set[str] = set()
    sent: dict[str, Event] = {}
    lastSeq: dict[tuple[str, str], int] = {}  # (room, epoch) -> highest seq seen by anyone
    for client, history in byClient.items():
        _checkClient(client, history, report, texts, places, seen, sent, lastSeq)
    report.messages = len(texts)
    report.sent = len(sent)
    report.accepted = sum(1 for text in sent if text in seen)
    if finalClients is None:
        finalClients = {c for c, history in byClient.items() if history and history[-1]["k"] != "close"}
    for client in finalClients:
        _checkReachedTheEnd(client, byClient[client], lastSeq, report)
    return report


def _checkClient(client: Any, history: list[Event], report: Report, texts: dict[Any, Any], places: dict[Any, Any],
                 seen: set[Any], sent: dict[Any, Any], lastSeq: dict[Any, Any]) -> None:
    highest: dict[tuple[str, str], tuple[int, int]] = {}  # (room, epoch) -> (seq, index) of this client's last
    expected: int | None = None  # the next seq on this connection's current stream
    unnumbered: set[str] = set()
    received: set[str] = set()
    for i, event in enumerate(history):
        kind = event["k"]
        if kind == "sent":
            sent[event["text"]] = event
        elif kind == "welcome":
            if event.get("since") is not None and event["recovered"] is not None:
                report.reconnects += 1
                if event["recovered"] is False:
                    report.unrecovered += 1
            since = event.get("since")
            if event["recovered"] is True and since is not None:
                if since[0] != event["epoch"]:
                    report.violations.append(Violation(
                        "recovery", f"client {client} recovered into another epoch", _around(history, i)))
                expected = since[1] + 1
            else:
                expected = None  # a fresh stream: history, then live, consecutively
        elif kind == "msg":
            text, seq = event["text"], event["seq"]
            if text in unnumbered or (seq is None and text in received):
                report.violations.append(Violation(
                    "twice", f"client {client} got {text!r} again after it came unnumbered", _around(history, i)))
            received.add(text)
            seen.add(text)
            if seq is None:
                report.unnumbered += 1
                unnumbered.add(text)
                continue
            room, epoch = event["room"], event["epoch"]
            key = (room, epoch, seq)
            first = texts.setdefault(key, (text, event))
            if first[0] != text:
                report.violations.append(Violation(
                    "one-numbering", f"{room} {epoch}:{seq} is {text!r} here and {first[0]!r} elsewhere",
                    [first[1], *_around(history, i)]))
            place = places.setdefault(text, (room, epoch, seq, event))
            if place[:3] != key:
                report.violations.append(Violation(
                    "twice", f"{text!r} numbered twice: {place[1]}:{place[2]} and {epoch}:{seq}",
                    [place[3], *_around(history, i)]))
            previous = highest.get((room, epoch))
            if previous is not None and seq <= previous[0]:
                report.violations.append(Violation(
                    "increasing", f"client {client} got {epoch}:{seq} after {epoch}:{previous[0]}",
                    _around(history, i, before=max(3, i - previous[1]))))
            if expected is not None and seq != expected:
                report.violations.append(Violation(
                    "gap", f"client {client} expected {epoch}:{expected} next on its connection, got {seq}",
                    _around(history, i)))
            expected = seq + 1
            highest[(room, epoch)] = (seq, i)
            lastSeq[(room, epoch)] = max(lastSeq.get((room, epoch), 0), seq)


def _checkReachedTheEnd(client: Any, history: list[Event], lastSeq: dict[Any, Any], report: Report) -> None:
    welcomes = [e for e in history if e["k"] == "welcome"]
    if not welcomes:
        return
    last = welcomes[-1]
    room, epoch = last["room"], last["epoch"]
    numbered = [e["seq"] for e in history if e["k"] == "msg" and e["epoch"] == epoch and e["seq"] is not None]
    # With no message since its last welcome: a resumed client is where it asked to resume
    # from; a fresh one where the room was when it joined.
    resumed = last["recovered"] is True and last.get("since") is not None
    mine = max(numbered) if numbered else (last["since"][1] if resumed else last["seq"])
    if mine < lastSeq.get((room, epoch), 0):
        report.violations.append(Violation(
            "complete", f"client {client} stayed in {room} but saw {epoch} only up to {mine} of "
            f"{lastSeq[(room, epoch)]}", history[-4:]))
