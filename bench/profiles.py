"""What share of a process's sampled CPU went to some of its modules, from py-spy's raw output
(``--format raw``: one collapsed stack a line, ``frame;frame;... COUNT``, each frame
``function (path:line)``).

Two shares, both of the busy samples (all but those waiting in the reactor's poll, which py-spy
counts as it runs without stopping the process): *inclusive*, the samples with a frame of those
modules anywhere on the stack (what they do and everything they call, as writing the lines they
make), and *self*, the samples whose innermost Python frame is in them.

    python -m bench.profiles PROFILE.txt [txchat/presence.py ...]
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from typing import Any

# Presence work (SPEC §12, §18): counts, people, member lists and their lines.
PRESENCE = ("txchat/presence.py", "txchat/people.py", "txchat/roster.py")
_FRAME = re.compile(r"^(.*) \(([^:()]+):\d+\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    """(function, path) of each frame, outermost first."""
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        out.append((match.group(1), match.group(2)) if match else (frame, ""))
    return out


def share(lines: list[str], modules: tuple[str, ...] = PRESENCE) -> dict[str, Any]:
    total = inclusive = own = idle = 0
    entries: Counter[str] = Counter()  # the outermost frame in the modules, for where the time goes
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        stackFrames = frames(stack)
        if stackFrames[-1][0] == "EPollReactor.doPoll":
            idle += n
            continue
        total += n
        inside = [i for i, (_, path) in enumerate(stackFrames) if path.endswith(modules)]
        if inside:
            inclusive += n
            function, path = stackFrames[inside[0]]
            entries[f"{function} ({path.rpartition('/')[2]})"] += n
            if stackFrames[-1][1].endswith(modules):
                own += n
    return {
        "samples": total, "idle_samples": idle,
        "inclusive_pct": round(100 * inclusive / total, 2) if total else 0.0,
        "self_pct": round(100 * own / total, 2) if total else 0.0,
        "entries_pct": {k: round(100 * v / total, 2) for k, v in entries.most_common(8)} if total else {},
    }


def main(argv: list[str]) -> int:
    path, modules = argv[0], tuple(argv[1:]) or PRESENCE
    with open(path) as f:
        print(json.dumps(share(f.readlines(), modules), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
