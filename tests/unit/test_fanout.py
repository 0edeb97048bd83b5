"""The output rules (README, "What a client sees") on plain objects."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from txchat.fanout import Fanout


def frame(payload: bytes) -> bytes:
    return b"F:" + payload


class Member:
    def __init__(self, fanout: Fanout[Member], pauseOnWrite: bool = False, added: bool = True) -> None:
        self.fanout = fanout
        self.frames: list[bytes] = []
        self.pauseOnWrite = pauseOnWrite
        if added:
            fanout.add(self, self.write)

    def write(self, data: bytes) -> None:
        self.frames.append(data)
        if self.pauseOnWrite:
            self.fanout.pause(self)


def test_one_shared_frame_per_flush() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a, b = Member(fanout), Member(fanout)
    assert fanout.queue(b"x") is True
    assert fanout.queue(b"y") is False
    assert fanout.flush() == []
    assert a.frames == b.frames == [b"F:x\ny"]
    assert a.frames[0] is b.frames[0]


def test_lines_queued_to_wait_leave_with_the_next_batch_whose_first_message_asks_for_a_flush() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a = Member(fanout)
    fanout.queueToWait(b"presence")
    fanout.queueToWait(b"more presence")
    assert fanout.queue(b"x") is True, "the batch had begun, but nobody had asked for its flush"
    assert fanout.queue(b"y") is False
    fanout.flush()
    assert a.frames == [b"F:presence\nmore presence\nx\ny"]
    assert fanout.queue(b"z") is True
    fanout.queue(b"after")
    fanout.queueToWait(b"late")
    assert fanout.queue(b"w") is False, "a flush is already asked for"
    fanout.flush()
    assert a.frames[-1] == b"F:z\nafter\nlate\nw"


def test_flush_with_nothing_published_writes_nothing() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a = Member(fanout)
    assert fanout.flush() == []
    assert a.frames == []


def test_paused_member_gets_backlog_on_resume_in_order() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a, b = Member(fanout), Member(fanout)
    fanout.pause(b)
    for m in (b"1", b"2"):
        fanout.queue(m)
        fanout.flush()
    fanout.queue(b"3")
    fanout.flush()
    assert b.frames == []
    fanout.resume(b)
    assert b.frames == [b"F:1\n2\n3"]
    assert a.frames == [b"F:1", b"F:2", b"F:3"]


def test_resume_without_backlog_writes_nothing() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a = Member(fanout)
    fanout.pause(a)
    fanout.resume(a)
    fanout.resume(a)
    assert a.frames == []


def test_pause_during_flush_is_safe_and_takes_effect_next_flush() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a = Member(fanout, pauseOnWrite=True)
    b = Member(fanout)
    fanout.queue(b"1")
    fanout.flush()
    fanout.queue(b"2")
    fanout.flush()
    assert a.frames == [b"F:1"] and fanout.backlog(a) == 1
    assert b.frames == [b"F:1", b"F:2"]


def test_overflowing_member_is_dropped_others_unaffected() -> None:
    fanout: Fanout[Member] = Fanout(3, frame)
    a, slow = Member(fanout), Member(fanout)
    fanout.pause(slow)
    fanout.queue(b"1")
    fanout.queue(b"2")
    assert fanout.flush() == []
    fanout.queue(b"3")
    assert fanout.flush() == []
    assert fanout.backlog(slow) == 3
    fanout.queue(b"4")
    assert fanout.flush() == [slow]
    assert slow not in fanout and len(fanout) == 1
    assert a.frames == [b"F:1\n2", b"F:3", b"F:4"]


def test_a_single_batch_larger_than_the_queue_drops_a_paused_member() -> None:
    fanout: Fanout[Member] = Fanout(2, frame)
    slow = Member(fanout)
    fanout.pause(slow)
    for m in (b"1", b"2", b"3"):
        fanout.queue(m)
    assert fanout.flush() == [slow]


def test_a_member_that_keeps_up_is_never_dropped_however_big_the_batch() -> None:
    fanout: Fanout[Member] = Fanout(2, frame)
    a = Member(fanout)
    for i in range(1000):
        fanout.queue(b"%d" % i)
    assert fanout.flush() == []
    assert a.frames[0].count(b"\n") == 999


def test_remove_and_membership() -> None:
    fanout: Fanout[Member] = Fanout(2, frame)
    a, b = Member(fanout), Member(fanout)
    fanout.pause(b)
    assert set(fanout) == {a, b} and len(fanout) == 2
    fanout.remove(a)
    fanout.remove(b)
    fanout.remove(b)
    assert len(fanout) == 0
    fanout.queue(b"x")
    fanout.flush()
    assert a.frames == [] and b.frames == []


# A scenario is a list of steps over a few members: publish, flush, a member's transport
# pausing or draining, a member joining or leaving.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 5)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("pause"), st.integers(0, 3)),
        st.tuples(st.just("resume"), st.integers(0, 3)),
        st.tuples(st.just("join"), st.integers(0, 3)),
        st.tuples(st.just("leave"), st.integers(0, 3)),
        st.tuples(st.just("fills"), st.integers(0, 3)),
    ),
    max_size=80,
)


class Seat:
    def __init__(self, fanout: Fanout[Seat]) -> None:
        self.fanout = fanout
        self.received: list[bytes] = []
        self.fills = False  # its transport fills up on the next write, pausing it mid-flush

    def write(self, frame: bytes) -> None:
        self.received.extend(frame.split(b"\n"))
        if self.fills:
            self.fills = False
            self.fanout.pause(self)


@settings(max_examples=300)
@given(steps, st.integers(1, 8))
def test_every_member_that_stays_gets_every_message_once_in_hub_order(scenario: list[tuple[str, int]],
                                                                      limit: int) -> None:
    fanout: Fanout[Seat] = Fanout(limit, lambda payload: payload)
    members = [Seat(fanout) for _ in range(4)]
    joinedAt: dict[int, int] = {}  # member -> index of the first message it must see
    gone: set[int] = set()
    published: list[bytes] = []
    for i in range(4):
        fanout.add(members[i], members[i].write)
        joinedAt[i] = 0
    for step, arg in scenario:
        if step == "publish":
            for _ in range(arg):
                message = b"m%d" % len(published)
                published.append(message)
                fanout.queue(message)
        elif step == "flush":
            for dropped in fanout.flush():
                gone.add(members.index(dropped))
        elif step == "pause":
            fanout.pause(members[arg])
        elif step == "resume":
            fanout.resume(members[arg])
        elif step == "join" and arg in gone:
            # A new client in that seat: it sees what is flushed from now on.
            members[arg] = Seat(fanout)
            gone.discard(arg)
            fanout.add(members[arg], members[arg].write)
            joinedAt[arg] = len(published) - fanout.pending
        elif step == "leave" and arg not in gone:
            fanout.remove(members[arg])
            gone.add(arg)
        elif step == "fills":
            members[arg].fills = True
    for dropped in fanout.flush():
        gone.add(members.index(dropped))
    for i, member in enumerate(members):
        fanout.resume(member)
        if i in gone:
            # Dropped or gone: what it got is still a prefix-free, in-order run of hub order.
            assert member.received == published[joinedAt[i] : joinedAt[i] + len(member.received)]
        else:
            assert member.received == published[joinedAt[i]:]
    assert all(fanout.backlog(m) <= limit for m in members)


# -- lines for one member (txchat.v2 answers) ----------------------------------------------

def test_a_members_own_lines_follow_the_shared_frame_in_the_same_write() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a, b = Member(fanout), Member(fanout)
    fanout.queue(b"x")
    fanout.queueTo(a, b"ack")
    fanout.queueTo(a, b"err")
    assert fanout.flush() == []
    assert a.frames == [b"F:xF:ack\nerr"]
    assert b.frames == [b"F:x"]
    assert fanout.flush() == [] and a.frames == [b"F:xF:ack\nerr"]


def test_own_lines_alone_go_only_to_their_member() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a, b = Member(fanout), Member(fanout)
    fanout.queueTo(b, b"typing")
    fanout.flush()
    assert (a.frames, b.frames) == ([], [b"F:typing"])


def test_own_lines_of_a_member_that_is_behind_join_its_backlog_and_count_against_it() -> None:
    fanout: Fanout[Member] = Fanout(3, frame)
    a = Member(fanout)
    fanout.pause(a)
    fanout.queue(b"x")
    fanout.queueTo(a, b"ack")
    assert fanout.flush() == []
    assert fanout.backlog(a) == 2
    fanout.queue(b"y")
    fanout.queueTo(a, b"ack2")
    assert fanout.flush() == [a]  # 4 would be waiting: over the limit of 3
    assert a not in fanout


def test_own_lines_for_a_member_not_yet_added_wait_for_it() -> None:
    """A joiner's welcome is written as it is added: its answers must come after."""
    fanout: Fanout[Member] = Fanout(10, frame)
    a, late = Member(fanout), Member(fanout, added=False)
    fanout.queue(b"x")
    fanout.queueTo(late, b"ack")
    fanout.flush()
    assert a.frames == [b"F:x"] and late.frames == [] and fanout.waiting(late)
    fanout.add(late, late.write)
    fanout.flush()
    assert late.frames == [b"F:ack"] and not fanout.waiting(late) and a.frames == [b"F:x"]


def test_a_removed_member_s_own_lines_go_with_it() -> None:
    fanout: Fanout[Member] = Fanout(10, frame)
    a = Member(fanout)
    fanout.queueTo(a, b"ack")
    fanout.remove(a)
    assert not fanout.waiting(a)
    assert fanout.flush() == [] and a.frames == []
