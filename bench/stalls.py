"""The longest single calls in a time-ordered py-spy profile (speedscope's format, idle samples
included: ``loadgen --profile FILE.json``): where the reactor stalled, and on what.

    python -m bench.stalls FILE.json [--top N]

A frame that stays at the same place on the stack across consecutive samples is one call (at
py-spy's 200 a second, anything over a few samples): for each stretch, the deepest such frame
below the reactor's own loop, and how long it lasted.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# The reactor's loop and twistd's start-up: on the stack all the time, never the stall itself.
_LOOP = {"run", "mainLoop", "runUntilCurrent", "startReactor", "postApplication", "runReactorWithLogging",
         "runApp", "<module>", "_run_module_as_main", "_run_code", "main", "doPoll", "poll"}


def stalls(profile: dict[str, Any], longer: float = 0.06) -> list[tuple[float, float, str]]:
    """(seconds, when, frame) of the calls longer than C{longer} seconds, longest first."""
    frames = profile["shared"]["frames"]
    found: dict[float, tuple[float, float, int, str]] = {}
    for thread in profile["profiles"]:
        opened: list[tuple[int, float]] = []  # the stack as it has been since when, frame by frame
        now = 0.0
        for stack, weight in [*zip(thread["samples"], thread["weights"]), ([], 0.0)]:
            same = 0
            while same < len(opened) and same < len(stack) and opened[same][0] == stack[same]:
                same += 1
            for depth in range(same, len(opened)):
                index, since = opened[depth]
                frame = frames[index]
                name = frame["name"]
                if now - since > longer and name.split(".")[-1] not in _LOOP:
                    where = f"{name} ({frame.get('file', '').rsplit('/', 1)[-1]}:{frame.get('line', '')})"
                    if since not in found or depth > found[since][2]:
                        found[since] = (now - since, since, depth, where)
            opened = opened[:same] + [(index, now) for index in stack[same:]]
            now += weight
    return sorted(((length, when, where) for length, when, _, where in found.values()), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=10)
    options = parser.parse_args()
    with open(options.profile) as f:
        profile = json.load(f)
    for length, when, where in stalls(profile)[:options.top]:
        print(f"{length * 1000:6.0f} ms at {when:6.2f} s  {where}")


if __name__ == "__main__":
    main()
