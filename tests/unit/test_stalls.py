"""bench.stalls: the longest single calls in a time-ordered profile."""

from __future__ import annotations

from bench.stalls import stalls


def test_a_call_held_across_samples_is_one_stall_and_calls_that_change_are_not() -> None:
    frames = [{"name": n, "file": "/x/f.py", "line": i} for i, n in enumerate(
        ["ReactorBase.run", "doPoll", "ChatHub.register", "dumps", "Fanout.flush"])]
    run, poll, register, dumps, flush = range(5)
    samples = ([[run, poll]] * 3 + [[run, register, dumps]] * 20 + [[run, poll]]
               + [[run, flush], [run, poll], [run, flush]] * 10)
    profile = {"shared": {"frames": frames},
               "profiles": [{"samples": samples, "weights": [0.005] * len(samples)}]}
    found = stalls(profile, longer=0.02)
    assert [(round(length, 3), round(when, 3), where) for length, when, where in found] == [
        (0.1, 0.015, "dumps (f.py:3)")], "the flushes are many short calls; the loop is never the stall"
