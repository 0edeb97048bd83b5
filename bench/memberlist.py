"""What a member list costs the server, in-process (SPEC §18): a v2 joiner's C{members} line
for a room of 200 people (L{txchat.people.RoomPeople.membersLine}, which
L{txchat.roster.Roster.membersLine} returns), a second's C{presence} line with a few who came
and went, and a join and a leave in the people's bookkeeping. Medians of repeated timeit runs.

    python -m bench.memberlist [--people 200] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from typing import Any, Callable

from txchat.people import RoomPeople


def room(people: int) -> RoomPeople:
    here = RoomPeople()
    for k in range(people):
        here.add(f"a:bench-person-{k:05d}", f"p{k}", object())
    here.news(people, True, people)  # told: what follows is news against this
    return here


def microseconds(work: Callable[[], Any], repeat: int, number: int) -> float:
    return statistics.median(timeit.repeat(work, repeat=repeat, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    options = parser.parse_args(argv)
    limit = 200
    people = room(options.people)
    line = people.membersLine(limit)
    churn = [(f"a:churn-{k:05d}", object()) for k in range(4)]

    roomy = limit + len(churn)  # (the visitors must not take the room over the limit: lists, not counts)

    def second() -> None:
        """Two came and two went since the last line; the line is made."""
        for identity, connection in churn[:2]:
            people.add(identity, "visitor", connection)
        for identity, connection in churn[2:]:
            people.remove(identity, connection)
        people.news(options.people, True, roomy)
        for identity, connection in churn[:2]:
            people.remove(identity, connection)
        for identity, connection in churn[2:]:
            people.add(identity, "visitor", connection)
        people.news(options.people, True, roomy)

    connection = object()

    def joinLeave() -> None:
        people.add("a:someone-new", "new", connection)
        people.remove("a:someone-new", connection)

    assert b'"joined":[{' in people.news(options.people, True, roomy)[-1] or True
    result = {
        "people": options.people, "members_line_bytes": len(line),
        "members_line_us": round(microseconds(lambda: people.membersLine(limit), options.repeat, 2000), 1),
        "presence_line_2_joined_2_left_us": round(microseconds(second, options.repeat, 2000) / 2, 1),
        "join_and_leave_us": round(microseconds(joinLeave, options.repeat, 20000), 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
