"""Check what every client of a fault run saw against txchat's promises (README "Faults we
test"): one numbering per room, nothing twice, exact recovery, and every numbered message
reaching every client that stayed or recovered; and, given the cluster's chat log (SPEC §16),
that the log holds what the clients saw. Plain code over lists.

An event is a dict with ``c`` (client id), ``k`` (kind), ``conn`` (the client's connection
number) and ``t`` (seconds), and by kind:

- ``welcome``: ``room``, ``epoch``, ``seq``, ``recovered`` (None on a fresh join), ``since``
  ([epoch, seq] the client asked for, or None);
- ``msg``: ``room``, ``epoch`` (the connection's stream at the time), ``seq`` (None: delivered
  unnumbered, during a Redis outage), ``text``, ``sender`` (the line's ``from``, if any);
- ``sent``: ``room``, ``text`` (unique in the run), on txchat.v2 ``id`` (the client's, one per
  text), ``cid`` (its ``cid=``) and ``resend`` (true when it is the same send again);
- ``ack`` (v2): ``room``, ``id``, ``epoch``, ``seq`` (None: delivered unnumbered);
- ``error`` (v2): ``room``, ``id``, ``code``, ``why``;
- ``unacked`` (v2, at the end): ``room``, ``id``, ``text`` of a send never acknowledged;
- ``close``: ``why``.

On txchat.v2 (rule ``ack``) every send is acknowledged by the end; an acknowledged ID appears
exactly once with its acked number (the texts are unique per ID, and nothing is delivered twice
to a client by the rules above, however often it was sent); one acknowledged unnumbered is
numbered nowhere; the acks of one ID agree. An error other than the refusals of the moment
(``unavailable``, ``rate-limited``, which the client sends again) is a violation too. And a
message from a client that gave ``cid=`` comes ``from`` ``a:CID`` (rule ``from``).

A log row is (room, epoch, seq, text), as PostgreSQL's table ``messages`` holds it. Every
numbered message a client saw must be in the log with that text, at that number only, and
nothing delivered unnumbered (not kept, §13) may be there. One exception: a Redis that lost its
data (restarted empty) took with it what its stream held for the log and was not yet written,
so in an epoch that its room left for another the messages after the last one the log has are
counted (C{logLost}), not reported; a hole before that is reported.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

Event = dict[str, Any]
LogRow = tuple[str, str, int, str]  # room, epoch, seq, text


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
    logged: int | None = None  # rows in the chat log (None: no log checked)
    logMissing: int = 0  # numbered messages that clients saw and the log lacks (each a violation)
    logLost: int = 0  # ... the log lacks because Redis lost its data before they were written
    acked: int = 0  # v2 sends acknowledged (distinct IDs)
    resent: int = 0  # v2 sends sent again (after a reconnect, or a refusal of the moment)
    errors: int = 0  # v2 error lines
    violations: list[Violation] = field(default_factory=list)

    def summary(self) -> str:
        log = "" if self.logged is None else (
            f", {self.logged} in the log ({self.logMissing} missing, {self.logLost} lost with Redis's data)")
        v2 = f", {self.acked} acked ({self.resent} resends, {self.errors} errors)" if self.acked or self.errors else ""
        return (f"{self.messages} messages ({self.unnumbered} unnumbered deliveries), {self.sent} sent, "
                f"{self.accepted} accepted{v2}, {self.reconnects} reconnects ({self.unrecovered} not recovered)"
                f"{log}, {len(self.violations)} violations")


def _around(events: list[Event], index: int, before: int = 3, after: int = 1) -> list[Event]:
    return events[max(0, index - before): index + after + 1]


def check(events: Iterable[Event], finalClients: set[Any] | None = None,
          log: Sequence[LogRow] | None = None) -> Report:
    """C{finalClients}: the clients connected when the run ended, each of which must have
    reached the end of its room's stream; by default every client whose last event is not a
    close. C{log}: the chat log's rows at the end, when the run kept one."""
    events = list(events)
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
    _checkAcks(byClient, texts, places, log or [], report)
    _checkFrom(events, report)
    if log is not None:
        _checkLog(events, texts, log, report)
    return report


RETRY = ("unavailable", "rate-limited")


def _checkFrom(events: list[Event], report: Report) -> None:
    senders = {e["text"]: "a:" + e["cid"] for e in events if e["k"] == "sent" and e.get("cid") is not None}
    wrong: set[str] = set()
    for event in events:
        if event["k"] == "msg" and event.get("sender") is not None and event["text"] in senders:
            if event["sender"] != senders[event["text"]] and event["text"] not in wrong:
                wrong.add(event["text"])
                report.violations.append(Violation(
                    "from", f"{event['text']!r} came from {event['sender']!r}, not {senders[event['text']]!r}",
                    [event]))


def _checkAcks(byClient: dict[Any, list[Event]], texts: dict[tuple[str, str, int], tuple[str, Event]],
               places: dict[str, tuple[str, str, int, Event]], log: Sequence[LogRow], report: Report) -> None:
    logged = {(room, epoch, seq): text for room, epoch, seq, text in log}
    for client, history in byClient.items():
        textOf: dict[str, str] = {}
        acks: dict[str, Event] = {}
        for i, event in enumerate(history):
            kind = event["k"]
            if kind == "sent" and event.get("id") is not None:
                if event.get("resend"):
                    report.resent += 1
                elif event["id"] in textOf:
                    report.violations.append(Violation(
                        "ack", f"client {client} used ID {event['id']!r} for two texts", _around(history, i)))
                textOf.setdefault(event["id"], event["text"])
            elif kind == "error":
                report.errors += 1
                if event.get("code") not in RETRY:
                    report.violations.append(Violation(
                        "ack", f"client {client}'s send {event.get('id')!r} refused: {event.get('code')}",
                        _around(history, i)))
            elif kind == "unacked":
                report.violations.append(Violation(
                    "ack", f"client {client}'s send {event['id']!r} ({event['text']!r}) was never acknowledged",
                    _around(history, i)))
            elif kind == "ack":
                first = acks.setdefault(event["id"], event)
                if (first["epoch"], first["seq"]) != (event["epoch"], event["seq"]):
                    report.violations.append(Violation(
                        "ack", f"client {client}'s ID {event['id']!r} acked as {first['epoch']}:{first['seq']} "
                        f"and as {event['epoch']}:{event['seq']}", [first, *_around(history, i)]))
                    continue
                if first is not event:
                    continue
                text = textOf.get(event["id"])
                if text is None:
                    report.violations.append(Violation(
                        "ack", f"client {client} got an ack for {event['id']!r}, which it never sent",
                        _around(history, i)))
                    continue
                report.acked += 1
                place = places.get(text)
                if event["seq"] is None:
                    if place is not None:
                        report.violations.append(Violation(
                            "ack", f"{text!r} acked unnumbered, but numbered {place[1]}:{place[2]}",
                            [place[3], *_around(history, i)]))
                    continue
                key = (event["room"], event["epoch"], event["seq"])
                if place is not None and place[:3] != key:
                    report.violations.append(Violation(
                        "ack", f"{text!r} acked as {key[1]}:{key[2]}, delivered as {place[1]}:{place[2]}",
                        [place[3], *_around(history, i)]))
                elif key in texts and texts[key][0] != text:
                    report.violations.append(Violation(
                        "ack", f"{text!r} acked as {key[1]}:{key[2]}, which clients saw as {texts[key][0]!r}",
                        [texts[key][1], *_around(history, i)]))
                elif place is None and logged.get(key) != text:
                    report.violations.append(Violation(
                        "ack", f"{text!r} acked as {key[1]}:{key[2]}, but no client saw it (nor the log)",
                        _around(history, i)))


def _currentEpochs(events: list[Event]) -> dict[str, str]:
    """Each room's epoch at the end: the one of its latest event (the run ends healed)."""
    latest: dict[str, tuple[float, str]] = {}
    for event in events:
        if event["k"] in ("welcome", "msg") and event.get("epoch") is not None:
            room = event["room"]
            if room not in latest or event["t"] >= latest[room][0]:
                latest[room] = (event["t"], event["epoch"])
    return {room: epoch for room, (_, epoch) in latest.items()}


def _checkLog(events: list[Event], texts: dict[tuple[str, str, int], tuple[str, Event]], log: Sequence[LogRow],
              report: Report) -> None:
    report.logged = len(log)
    logged: dict[tuple[str, str, int], str] = {}
    places: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    newest: dict[tuple[str, str], int] = {}  # (room, epoch) -> the log's highest seq
    for room, epoch, seq, text in log:
        logged[(room, epoch, seq)] = text
        places[text].append((room, epoch, seq))
        newest[(room, epoch)] = max(newest.get((room, epoch), 0), seq)
    numbered = {text: (key, event) for key, (text, event) in texts.items()}
    for text, where in places.items():
        if len(where) > 1:
            report.violations.append(Violation(
                "log", f"{text!r} is in the log {len(where)} times: "
                + ", ".join(f"{r} {e}:{s}" for r, e, s in sorted(where)), []))
        elif text in numbered and numbered[text][0] != where[0]:
            (room, epoch, seq), event = numbered[text]
            report.violations.append(Violation(
                "log", f"{text!r} is at {where[0][1]}:{where[0][2]} in the log, {epoch}:{seq} for the clients",
                [event]))
    unnumbered = {e["text"]: e for e in events if e["k"] == "msg" and e["seq"] is None}
    for text, event in unnumbered.items():
        if text in places:
            room, epoch, seq = places[text][0]
            report.violations.append(Violation(
                "log", f"{text!r} was delivered unnumbered (not kept) but the log has it at {room} {epoch}:{seq}",
                [event]))
    current = _currentEpochs(events)
    for key, (text, event) in sorted(texts.items()):
        room, epoch, seq = key
        there = logged.get(key)
        if there is None:
            if current.get(room) != epoch and seq > newest.get((room, epoch), 0):
                report.logLost += 1
            else:
                report.logMissing += 1
                report.violations.append(Violation(
                    "log", f"{room} {epoch}:{seq} {text!r}, seen by clients, is not in the log", [event]))
        elif there != text:
            report.violations.append(Violation(
                "log", f"{room} {epoch}:{seq} is {there!r} in the log, {text!r} for the clients", [event]))


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
