"""The fault runs' history checker (bench/historycheck.py) on small made-up histories: a clean
one passes, and each broken promise is reported with the excerpt that shows it."""

from __future__ import annotations

from typing import Any


from tests.support.historycheck import LogRow, Report, check


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
        self.events.append({"c": c, "k": "welcome", "conn": self.conns[c], "t": len(self.events), "room": "r",
                            "epoch": epoch, "seq": seq, "recovered": recovered, "since": since})
        return self

    def msg(self, c: str, *seqs: int | None, text: str | None = None) -> History:
        for seq in seqs:
            self.events.append({"c": c, "k": "msg", "conn": self.conns[c], "t": len(self.events), "room": "r",
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


def log(epoch: str, *seqs: int, text: str | None = None) -> list[LogRow]:
    return [("r", epoch, seq, text or f"m{seq}") for seq in seqs]


def test_a_log_holding_what_the_clients_saw_passes() -> None:
    h = History().welcome("a", "E", 0).msg("a", 1, 2, 3).msg("a", None, text="unkept")
    report = check(h.events, log=log("E", 1, 2, 3) + log("E", 4))  # 4: numbered after the clients left
    assert report.violations == [] and (report.logged, report.logMissing, report.logLost) == (4, 0, 0)
    assert "4 in the log" in report.summary()
    assert "in the log" not in check(h.events).summary(), "no log, no log rule"


def test_a_message_the_clients_saw_and_the_log_lacks_is_reported() -> None:
    h = History().welcome("a", "E", 0).msg("a", 1, 2, 3)
    for rows in (log("E", 1, 2), log("E", 2, 3), log("E", 1, 3)):
        report = check(h.events, log=rows)
        assert rules(report) == ["log"] and report.logMissing == 1, rows
        assert "is not in the log" in report.violations[0].what


def test_another_text_at_a_number_a_text_twice_or_elsewhere_in_the_log_is_reported() -> None:
    h = History().welcome("a", "E", 0).msg("a", 1, 2)
    (other,) = check(h.events, log=log("E", 1) + [("r", "E", 2, "changed")]).violations
    assert other.rule == "log" and "'changed' in the log, 'm2' for the clients" in other.what
    twice = check(h.events, log=log("E", 1, 2) + [("r", "E", 3, "m1")]).violations
    assert [v.rule for v in twice] == ["log"] and "in the log 2 times" in twice[0].what
    (elsewhere,) = check(h.events, log=log("E", 1) + [("r", "E", 7, "m2"), ("r", "E", 2, "x")]).violations[:1]
    assert "at E:7 in the log, E:2 for the clients" in elsewhere.what


def test_a_text_delivered_unnumbered_must_not_be_in_the_log() -> None:
    h = History().welcome("a", "E", 0).msg("a", 1).msg("a", None, text="during outage")
    report = check(h.events, log=log("E", 1) + [("r", "E", 2, "during outage")])
    assert rules(report) == ["log"] and "delivered unnumbered" in report.violations[0].what


def test_the_tail_of_an_epoch_redis_lost_is_counted_but_a_hole_is_not_excused() -> None:
    # Redis restarted empty after E:3: the room went on in epoch F.
    h = History().welcome("a", "E", 0).msg("a", 1, 2, 3).close("a").welcome("a", "F", 0)
    h.msg("a", 1, text="f1").msg("a", 2, text="f2")
    f = [("r", "F", 1, "f1"), ("r", "F", 2, "f2")]
    report = check(h.events, log=log("E", 1) + f)
    assert report.violations == [] and (report.logLost, report.logMissing) == (2, 0)
    hole = check(h.events, log=log("E", 1, 3) + f)
    assert rules(hole) == ["log"] and "E:2" in hole.violations[0].what
    # The room's current epoch has no excuse, even for its last message.
    assert rules(check(h.events, log=log("E", 1, 2, 3) + f[:1])) == ["log"]
