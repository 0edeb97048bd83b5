"""The txchat package's import graph has no circle.

Every import counts, at module level or in a function, and those under ``if TYPE_CHECKING:``
too: a type-only import still ties one module's meaning to the other's, and is one edit away
from a runtime one. With them counted, no runtime circle is possible either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import txchat


PACKAGE = Path(txchat.__file__).parent


def modules() -> dict[str, Path]:
    return {
        ".".join(("txchat", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The txchat modules that C{name} imports, wherever in it."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # (from txchat import wire)
    return {module for module in found if module in known and module != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, set(known)) for name, path in known.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle in the graph, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read() -> None:
    edges = graph()
    assert {"txchat.hub", "txchat.protocol", "txchat.gate", "txchat.wire"} <= set(edges)
    assert "txchat.wire" in edges["txchat.gate"], "from txchat import wire counts"
    assert "txchat.hub" in edges["txchat.protocol"], "an import under TYPE_CHECKING counts"
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_circle() -> None:
    assert cycle(graph()) is None


def test_the_hub_does_not_know_the_protocol() -> None:
    assert "txchat.protocol" not in graph()["txchat.hub"]
