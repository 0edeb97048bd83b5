from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from twisted.internet import reactor

HERE = Path(__file__).resolve().parent
# A test's layer is its directory's: tests/unit -> unit, tests/system/cluster -> cluster.
LAYERS = {HERE / "unit": "unit", HERE / "memory": "memory", HERE / "live": "live"} | {
    HERE / "system" / name: name for name in ("process", "cluster", "browser", "faults")
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        layers = [layer for directory, layer in LAYERS.items() if path.is_relative_to(directory)]
        if len(layers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: a test goes in one of the layer directories (tests/README.md)")
        item.add_marker(layers[0])


def _isWaker(selectable: object) -> bool:
    # The reactor adds its own wakers (signals, threads) when it first runs.
    return "Waker" in type(selectable).__name__


@pytest.fixture(autouse=True)
def cleanReactor() -> Iterator[None]:
    """pytest-twisted does not check for a dirty reactor: fail a test that leaves timers,
    connections or listening ports behind."""
    readers, writers = set(reactor.getReaders()), set(reactor.getWriters())
    calls = set(reactor.getDelayedCalls())
    yield
    leftCalls = [c for c in reactor.getDelayedCalls() if c not in calls and c.active()]
    leftReaders = [r for r in reactor.getReaders() if r not in readers and not _isWaker(r)]
    leftWriters = [w for w in reactor.getWriters() if w not in writers and not _isWaker(w)]
    described = [f"{c!r} on {getattr(getattr(c, 'func', None), '__self__', None)!r}" for c in leftCalls]
    for call in leftCalls:
        call.cancel()
    for selectable in {*leftReaders, *leftWriters}:
        reactor.removeReader(selectable)  # type: ignore[arg-type]
        reactor.removeWriter(selectable)  # type: ignore[arg-type]
    assert not leftCalls, f"test left delayed calls behind: {described}"
    assert not leftReaders and not leftWriters, f"test left connections behind: {leftReaders + leftWriters}"
