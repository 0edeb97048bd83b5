"""The docs against the code they describe: every handshake outcome the code counts is in the
metrics table, every link and repository path named in README.md and docs/ exists, and the
recovery client shown in docs/protocol.md is the file its test runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from txchat.tap import Options


ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LABEL = re.compile(r"[a-z]+(?:-[a-z]+)*\Z")


def _name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def handshakeOutcomes() -> set[str]:
    """Every C{outcome} label of txchat_handshakes_total the code can count, read from its source:
    literals given to C{.labels(…)} or set as C{outcome}, reasons given to C{refused(…)} or a C{Refusal(…)}, and the
    reasons the admission functions (C{admit}, C{hold}) return or set as C{reason}."""
    reasons: set[str] = set()
    labels: set[str] = set()
    for path in (ROOT / "txchat").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "outcome" for t in node.targets):
                labels.update(s for s in _strings(node.value) if s == "accepted" or s.startswith("refused-"))
            if isinstance(node, ast.Call):
                name = _name(node)
                if name == "labels":
                    labels.update(s for s in _strings(node) if s == "accepted" or s.startswith("refused-"))
                elif name == "refused" and node.args:
                    reasons.update(_strings(node.args[0]))
                elif name == "Refusal":
                    given = [k.value for k in node.keywords if k.arg == "label"] or node.args[-1:]
                    for value in given:
                        reasons.update(_strings(value))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ("admit", "_admit", "hold"):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Return) and inner.value is not None:
                        reasons.update(_strings(inner.value))
                    elif isinstance(inner, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == "reason" for t in inner.targets):
                        reasons.update(_strings(inner.value))
    labels |= {"refused-" + reason for reason in reasons if LABEL.match(reason)}
    return {label for label in labels if label != "refused-"}


def documentedOutcomes() -> set[str]:
    """The outcomes the operations reference lists (its table of handshake outcomes)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = re.findall(r"^\| `(accepted|refused-[a-z-]+)` \|", text, re.M)
    return set(rows)


def test_every_handshake_outcome_the_code_counts_is_in_the_metrics_table() -> None:
    counted = handshakeOutcomes()
    # The reader of the code must still find them (a refactor that hides them fails here).
    assert {"accepted", "refused-origin", "refused-bad-request", "refused-not-found"} <= counted, counted
    documented = documentedOutcomes()
    assert counted - documented == set(), "counted but not in docs/operations.md's outcome table"
    assert documented - counted == set(), "in the outcome table but never counted"


def _linkTargets(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings."""
    headings = re.findall(r"^#+ (.*)$", doc.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


# A path into the repository named in the text: one of its top-level directories or files.
REPO_PATH = re.compile(
    r"(?<![\w/.$~-])((?:txchat|tests|deploy|web|bench|docs|artifacts|twisted|\.ci)/[\w./*-]*[\w*]"
    r"|(?:setup\.py|pyproject\.toml|pytest\.ini|mypy\.ini|README\.md))(?![\w/-])"
)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_repository_path_in_the_docs_exists(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text
    missing = []
    for target in _linkTargets(text):
        if re.match(r"[a-z]+:", target):
            continue  # a URL (https:, mailto:)
        path, _, anchor = target.partition("#")
        linked = doc.parent / path if path else doc
        if not linked.exists() or anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
            missing.append(target)
    for path in REPO_PATH.findall(text):
        if path.endswith("/"):
            path = path[:-1]
        if not list(ROOT.glob(path)) and not (ROOT / path).exists():
            missing.append(path)
    assert missing == [], f"{doc.name} names what does not exist"


def test_the_readme_is_short_and_links_every_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80
    linked = {target.split("#")[0] for target in _linkTargets(readme)}
    assert {f"docs/{p.name}" for p in DOCS[1:]} <= linked
    assert "artifacts/page-desktop-light.png" in linked, "the screenshot"
    for command in ("bash deploy/install.sh && .venv/bin/twistd --pidfile= -n txchat --port 8080",
                    "bash tests/run.sh"):
        assert command in readme


def test_nothing_says_every_page_chats_with_every_other_one() -> None:
    for text in [Options.longdesc, *(doc.read_text() for doc in DOCS)]:
        assert "every other one" not in text
        assert "chats with every" not in text


def test_the_recovery_client_shown_is_the_one_tested() -> None:
    shown = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "protocol.md").read_text(), re.S)
    assert shown is not None
    client = (ROOT / "docs" / "examples" / "recovery_client.py").read_text()
    assert client.endswith(shown.group(1)), "docs/protocol.md shows another client than the file"


def test_the_v2_client_shown_is_the_one_tested() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    v2 = text[text.index("## The txchat.v2 protocol"):]
    shown = re.search(r"```python\n(.*?)```", v2, re.S)
    assert shown is not None
    client = (ROOT / "docs" / "examples" / "v2_client.py").read_text()
    assert client.endswith(shown.group(1)), "docs/protocol.md shows another v2 client than the file"


def test_the_js_client_shown_is_the_one_tested() -> None:
    shown = re.search(r"```javascript\n(.*?)```", (ROOT / "docs" / "protocol.md").read_text(), re.S)
    assert shown is not None
    assert (ROOT / "docs" / "examples" / "v2_client.js").read_text() == shown.group(1)
