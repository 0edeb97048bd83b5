"""Bans, plain, on a task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from txchat.bans import Bans


def test_a_ban_holds_until_it_ends_and_only_in_its_room() -> None:
    clock = Clock()
    bans = Bans(clock)
    bans.ban("r", "bob", 30)
    assert bans.banned("r", "bob") and not bans.banned("s", "bob") and not bans.banned("r", "ann")
    clock.advance(29.9)
    assert bans.banned("r", "bob")
    clock.advance(0.1)
    assert not bans.banned("r", "bob") and len(bans) == 0


def test_lifting_says_whether_a_ban_was_in_force() -> None:
    clock = Clock()
    bans = Bans(clock)
    bans.ban("r", "bob", 10)
    assert bans.lift("r", "bob") and not bans.banned("r", "bob")
    assert not bans.lift("r", "bob")
    bans.ban("r", "bob", 10)
    clock.advance(10)
    assert not bans.lift("r", "bob")  # it had ended


def test_a_new_ban_replaces_the_end_and_ended_ones_are_pruned() -> None:
    clock = Clock()
    bans = Bans(clock)
    bans.ban("r", "bob", 100)
    bans.ban("r", "bob", 5)
    clock.advance(5)
    assert not bans.banned("r", "bob")
    for i in range(10):
        bans.ban("r", f"u{i}", clock.seconds() + 1)
    clock.advance(1)
    bans.ban("r", "carl", clock.seconds() + 1)
    assert len(bans) == 1


def test_replacing_takes_another_keeper_s_set_whole() -> None:
    clock = Clock()
    bans = Bans(clock)
    bans.ban("r", "ann", 10)
    bans.replace({("r", "bob"): 20, ("r", "old"): 0})
    assert not bans.banned("r", "ann"), "lifted elsewhere while this copy was not told"
    assert bans.banned("r", "bob") and len(bans) == 1
