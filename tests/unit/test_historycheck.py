"""The fault runs' history checker (bench/historycheck.py) on small made-up histories: a clean
one passes, and each broken promise is reported with the excerpt that shows it."""

from __future__ import annotations

from typing import Any


from tests.support.historycheck import Report, check


class History:
    """Events as the fault clients record them, for one room."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.conns: dict[str, int] = {}
        self.epochs: dict[str, str] = {}

    def welcome(self, c: str, epoch: str, seq: int, recovered: bool | None = None,
                since: list[Any] | None = None) -> History:
        self.conns[c] = self.conns.get(c, 0) + 1
        self.epochs[c] = epoch
        self.events.append({"c": c, "k": "welcome", "conn": self.conns[c], "t": 0, "room": "r", "epoch": epoch,
                            "seq": seq, "recovered": recovered, "since": since})
        return self

    def msg(self, c: str, *seqs: int | None, text: str | None = None) -> History:
        for seq in seqs:
            self.events.append({"c": c, "k": "msg", "conn": self.conns[c], "t": 0, "room": "r",
                                "epoch": self.epochs[c], "seq": seq, "text": text or f"m{seq}"})
        return self

    def sent(self, c: str, text: str) -> History:
        self.events.append({"c": c, "k": "sent", "conn": self.conns[c], "t": 0, "room": "r", "text": text})
        return self

    def close(self, c: str) -> History:
        self.events.append({"c": c, "k": "close", "conn": self.conns[c], "t": 0, "why": "cut"})
        return self


def rules(report: Report) -> list[str]:
    return [v.rule for v in report.violations]


def test_a_clean_history_with_a_recovered_reconnect_passes() -> None:
    h = History().welcome("a", "E", 0).welcome("b", "E", 0).sent("a", "m1").msg("a", 1, 2).msg("b", 1, 2)
    h.close("b").welcome("b", "E", 5, recovered=True, since=["E", 2]).msg("b", 3, 4, 5)
    h.msg("a", 3, 4, 5)
    report = check(h.events)
    assert report.violations == []
    assert (report.messages, report.reconnects, report.sent, report.accepted) == (5, 1, 1, 1)


def test_one_number_with_two_texts_is_reported_with_both() -> None:
    h = History().welcome("a", "E", 0).welcome("b", "E", 0).msg("a", 1).msg("b", 1, text="other")
    (violation,) = check(h.events).violations
    assert violation.rule == "one-numbering" and "E:1" in violation.what
    assert {e.get("text") for e in violation.excerpt} >= {"m1", "other"}
    assert "VIOLATION [one-numbering]" in str(violation)


def test_a_duplicate_and_a_step_back_are_reported() -> None:
    assert "increasing" in rules(check(History().welcome("a", "E", 0).msg("a", 1, 2, 2).events))
    assert "increasing" in rules(check(History().welcome("a", "E", 0).msg("a", 1, 3, 2).events))


def test_a_gap_on_one_connection_or_after_a_recovery_is_reported() -> None:
    assert rules(check(History().welcome("a", "E", 0).msg("a", 1, 3).events)) == ["gap"]
    h = History().welcome("a", "E", 0).msg("a", 1, 2).close("a")
    h.welcome("a", "E", 6, recovered=True, since=["E", 2]).msg("a", 4, 5, 6)
    assert rules(check(h.events)) == ["gap"]


def test_an_unrecovered_reconnect_may_skip_and_is_counted() -> None:
    h = History().welcome("a", "E", 0).msg("a", 1, 2).close("a")
    h.welcome("a", "E", 9, recovered=False, since=["E", 2]).msg("a", 5, 6, 7, 8, 9)
    report = check(h.events)
    assert report.violations == [] and report.unrecovered == 1


def test_a_client_that_stayed_must_reach_the_end_of_the_stream() -> None:
    h = History().welcome("a", "E", 0).welcome("b", "E", 0).msg("a", 1, 2, 3).msg("b", 1, 2)
    (violation,) = check(h.events).violations
    assert violation.rule == "complete" and "up to 2 of 3" in violation.what
    assert check(h.events, finalClients={"a"}).violations == []
    # A resumed client with nothing after its welcome is where it asked to resume from.
    h2 = History().welcome("a", "E", 0).msg("a", 1, 2, 3).welcome("b", "E", 3, recovered=True, since=["E", 1])
    assert rules(check(h2.events)) == ["complete"]


def test_unnumbered_messages_are_counted_and_never_come_again() -> None:
    h = History().welcome("a", "E", 0).msg("a", None, text="during outage").msg("a", 1)
    report = check(h.events)
    assert report.violations == [] and report.unnumbered == 1
    h.msg("a", 2, text="during outage")
    assert "twice" in rules(check(h.events))


def test_a_text_numbered_twice_is_reported() -> None:
    h = History().welcome("a", "E", 0).msg("a", 1, text="x").msg("a", 2, text="x")
    assert "twice" in rules(check(h.events))


def test_recovering_into_another_epoch_is_reported() -> None:
    h = History().welcome("a", "E", 0).msg("a", 1).close("a").welcome("a", "F", 1, recovered=True, since=["E", 1])
    assert "recovery" in rules(check(h.events))
