"""When the hub freezes what connections brought, and when it gives memory back (plain code)."""

from __future__ import annotations

import gc
import weakref

from txchat import memory
from txchat.memory import Heap


def test_a_freeze_once_a_crowd_of_new_connections_stays_and_not_for_ones_that_come_and_go() -> None:
    heap = Heap(crowd=3)
    assert [heap.joined(c, n) for n, c in enumerate("ab", 1)] == [False, False]
    assert heap.left("b", 1) is False, "came and went before any freeze: collected as usual"
    assert [heap.joined(c, n) for n, c in enumerate("cd", 2)] == [False, True], "a, c and d stay"
    assert heap.joined("e", 4) is False, "counting starts again after a freeze"


def test_memory_goes_back_once_a_crowd_has_gone_not_when_frozen_ones_come_and_go() -> None:
    # (what happens, the connection, open after it, whether to freeze / give back)
    table = [
        ("joined", "a", 1, False), ("joined", "b", 2, False), ("joined", "c", 3, True),  # a, b, c frozen
        ("joined", "d", 4, False),
        ("left", "d", 3, False),  # young: counts no more towards a freeze
        ("left", "a", 2, False),  # frozen: freed as it goes (no cycle), nothing waits for a pass
        ("joined", "e", 3, False), ("left", "b", 2, False),
        ("joined", "f", 3, False), ("left", "c", 2, False),  # every frozen one gone, as many came
        ("left", "e", 1, True),  # 4 at the most, 1 open: a crowd has gone
    ]
    heap = Heap(crowd=3)
    for what, connection, count, expected in table:
        said = heap.joined(connection, count) if what == "joined" else heap.left(connection, count)
        assert said is expected, (what, connection)
    heap.gaveBack(1)
    assert heap.left("f", 0) is False, "counting starts again after a give-back"


def test_a_crowd_gone_is_counted_from_the_most_open_at_once() -> None:
    heap = Heap(crowd=3)
    for n, c in enumerate("abcdef", 1):
        heap.joined(c, n)
    assert [heap.left(c, n) for n, c in zip((5, 4, 3), "fed")] == [False, False, True], "6 at most, 3 open"


def test_a_freeze_collects_the_garbage_that_came_since_instead_of_freezing_it() -> None:
    class Node:
        cycle: object

    garbage, kept = Node(), Node()
    garbage.cycle, kept.cycle = garbage, kept
    gone = weakref.ref(garbage)
    del garbage
    try:
        memory.freeze()
        assert gone() is None, "a cycle nobody holds was collected, not frozen"
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects()), "what lives is frozen: passes skip it"
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())
