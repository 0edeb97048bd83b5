"""Property tests of normalisation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from txchat.wire import normalise

texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)


@given(texts)
def test_normalise_has_no_newlines_and_no_outer_white_space(text: str) -> None:
    result = normalise(text.encode("utf-8")).decode("utf-8")
    assert "\n" not in result
    assert result == result.strip()
    assert normalise(result.encode("utf-8")).decode("utf-8") == result  # idempotent


@given(texts)
def test_normalise_keeps_everything_between(text: str) -> None:
    result = normalise(text.encode("utf-8")).decode("utf-8")
    assert result in text.replace("\n", " ")
    assert result == text.replace("\n", " ").strip()
