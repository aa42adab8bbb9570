"""The projections' fast JSON parsing of event states reads every document as the standard
library does (integers of any size, floats, any text), so no projection differs by parser."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from projections.event_log import _parsed

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types throughout (1 == 1.0 would hide an int read as a float)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return b != b  # NaN
    return bool(a == b)


@given(documents, st.booleans())
def test_a_state_parses_as_the_standard_library_parses_it(document: Any, ascii_only: bool) -> None:
    state = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        expected = json.loads(state.decode("utf-8"))
    except UnicodeDecodeError:
        return  # not UTF-8 (a lone surrogate written raw): undecodable either way
    assert _same(_parsed(state), expected)
