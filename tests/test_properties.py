"""Property tests: normalisation, and the fanout's promise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txchat.fanout import Fanout
from txchat.protocol import normalise

pytestmark = pytest.mark.unit

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@given(texts)
def test_normalise_has_no_newlines_and_no_outer_white_space(text):
    result = normalise(text.encode("utf-8")).decode("utf-8")
    assert "\n" not in result
    assert result == result.strip()
    assert normalise(result.encode("utf-8")).decode("utf-8") == result  # idempotent


@given(texts)
def test_normalise_keeps_everything_between(text):
    result = normalise(text.encode("utf-8")).decode("utf-8")
    assert result in text.replace("\n", " ")
    assert result == text.replace("\n", " ").strip()


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


class Member:
    def __init__(self, fanout: Fanout) -> None:
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
def test_every_member_that_stays_gets_every_message_once_in_hub_order(scenario, limit):
    fanout = Fanout(limit, lambda payload: payload)
    members = [Member(fanout) for _ in range(4)]
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
            members[arg] = Member(fanout)
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
