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

    def msg(self, c: str, *seqs: int | None, text: str | None = None, sender: str = "a:cid-of-a") -> History:
        for seq in seqs:
            self.events.append({"c": c, "k": "msg", "conn": self.conns[c], "t": len(self.events), "room": "r",
                                "epoch": self.epochs[c], "seq": seq, "text": text or f"m{seq}", "sender": sender})
        return self

    def sent(self, c: str, text: str, id: str | None = None, resend: bool = False) -> History:
        event = {"c": c, "k": "sent", "conn": self.conns[c], "t": 0, "room": "r", "text": text}
        if id is not None:
            event.update(id=id, cid=f"cid-of-{c}", resend=resend)
        self.events.append(event)
        return self

    def ack(self, c: str, id: str, epoch: str | None, seq: int | None) -> History:
        self.events.append({"c": c, "k": "ack", "conn": self.conns[c], "t": 0, "room": "r", "id": id,
                            "epoch": epoch, "seq": seq})
        return self

    def error(self, c: str, id: str, code: str) -> History:
        self.events.append({"c": c, "k": "error", "conn": self.conns[c], "t": 0, "room": "r", "id": id,
                            "code": code, "why": "no"})
        return self

    def unacked(self, c: str, id: str, text: str) -> History:
        self.events.append({"c": c, "k": "unacked", "conn": self.conns[c], "t": 0, "room": "r", "id": id,
                            "text": text})
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


def v2() -> History:
    """Client a sends m1 (ID 1), sees it as E:1; the link goes before its ack; it sends ID 1
    again on its next connection, which acks it with the first number, and sends ID 2."""
    h = History().welcome("a", "E", 0).welcome("b", "E", 0).sent("a", "m1", id="1").msg("a", 1).msg("b", 1)
    h.close("a").welcome("a", "E", 1, recovered=True, since=["E", 1]).sent("a", "m1", id="1", resend=True)
    return h.ack("a", "1", "E", 1).sent("a", "m2", id="2").msg("a", 2).msg("b", 2).ack("a", "2", "E", 2)


def test_v2_sends_resent_and_acked_with_their_numbers_pass() -> None:
    report = check(v2().events)
    assert report.violations == []
    assert (report.acked, report.resent, report.errors) == (2, 1, 0)
    assert "2 acked (1 resends, 0 errors)" in report.summary()


def test_a_resent_text_delivered_again_is_reported() -> None:
    h = v2().msg("a", 3, text="m1").msg("b", 3, text="m1")
    assert set(rules(check(h.events))) == {"twice"}


def test_an_ack_with_another_number_than_delivered_or_never_seen_is_reported() -> None:
    h = v2().sent("a", "m3", id="3").msg("a", 3, text="m3").msg("b", 3, text="m3").ack("a", "3", "E", 4)
    (violation,) = check(h.events).violations
    assert violation.rule == "ack" and "'m3' acked as E:4, delivered as E:3" in violation.what
    h = v2().sent("a", "m3", id="3").ack("a", "3", "E", 2)
    assert "which clients saw as 'm2'" in check(h.events).violations[0].what
    h = v2().sent("a", "m3", id="3").ack("a", "3", "E", 3)
    assert "no client saw it" in check(h.events).violations[0].what
    assert check(h.events, log=log("E", 1, 2) + [("r", "E", 3, "m3")]).violations == [], "the log has it"


def test_acks_of_one_id_that_disagree_are_reported() -> None:
    h = v2().ack("a", "2", "E", 1)
    assert rules(check(h.events)) == ["ack"] and "acked as E:2 and as E:1" in check(h.events).violations[0].what


def test_an_ack_without_a_number_for_a_text_numbered_elsewhere_is_reported() -> None:
    h = v2().sent("a", "m3", id="3").msg("a", None, text="m3").ack("a", "3", None, None)
    assert check(h.events).violations == []
    h.msg("a", 3, text="m3").msg("b", 3, text="m3")
    assert set(rules(check(h.events))) == {"ack", "twice"}, "twice: a got it again, numbered"


def test_an_unacknowledged_send_and_a_lasting_refusal_are_reported() -> None:
    assert rules(check(v2().sent("a", "m3", id="3").unacked("a", "3", "m3").events)) == ["ack"]
    h = v2().sent("a", "m3", id="3").error("a", "3", "rate-limited")
    assert check(h.events).violations == [] and check(h.events).errors == 1, "a refusal of the moment"
    assert rules(check(v2().sent("a", "m3", id="3").error("a", "3", "too-long").events)) == ["ack"]


def test_an_id_for_two_texts_or_an_ack_for_an_id_never_sent_is_reported() -> None:
    assert rules(check(v2().sent("a", "m3", id="1").events)) == ["ack"]
    assert rules(check(v2().ack("a", "9", "E", 2).events)) == ["ack"]


def test_a_message_from_another_sender_than_its_cid_says_is_reported() -> None:
    h = v2().msg("a", 3, text="m9", sender="x").msg("b", 3, text="m9", sender="x")
    assert check(h.events).violations == [], "nobody here sent m9 with a cid"
    h = v2().sent("a", "m3", id="3").msg("a", 3, text="m3", sender="a:someone-else").msg("b", 3, text="m3")
    (violation,) = [v for v in check(h.events).violations if v.rule == "from"]
    assert "came from 'a:someone-else', not 'a:cid-of-a'" in violation.what
