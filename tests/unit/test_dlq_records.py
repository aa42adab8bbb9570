"""What `credits dlq` reads back from a DLQ record (`infra/dlq.DlqRecord`) and prints: for
whatever `dead_letter` was given, the original's headers come back exactly (less any we would
never copy) and every cut part is named; and any bytes in the DLQ, ours or not, are shown
without an exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from infra.dlq import (
    MAX_HEADERS_BYTES,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    OWN_HEADER_PREFIXES,
    DlqCode,
    DlqRecord,
    dead_letter,
)
from services.cli.dlq import _text

names = st.text(min_size=1, max_size=20)
header_values = st.binary(max_size=200) | st.none()
headers = st.lists(st.tuples(names, header_values), max_size=8)
sizes = st.sampled_from([0, 10, MAX_VALUE_BYTES, MAX_VALUE_BYTES + 1])


def read_back(key: bytes | None, value: bytes | None, original: list, code: DlqCode) -> DlqRecord:
    letter = dead_letter(
        code=code,
        message="why",
        topic="p.credits.commands",
        partition=3,
        offset=41,
        key=key,
        value=value,
        headers=original,
    )
    return DlqRecord(
        partition=0,
        offset=0,
        timestamp_ms=0,
        key=letter.key,
        value=letter.value,
        value_bytes=-1 if letter.value is None else len(letter.value),
        headers=letter.headers,
    )


@given(
    key=st.binary(max_size=MAX_KEY_BYTES + 1) | st.none(),
    value_size=sizes,
    original=headers,
    code=st.sampled_from(DlqCode),
)
def test_the_original_headers_and_every_cut_come_back(
    key: bytes | None, value_size: int, original: list, code: DlqCode
) -> None:
    record = read_back(key, b"v" * value_size, original, code)

    assert (record.code, record.source_topic) == (code.value, "p.credits.commands")
    assert (record.source_partition, record.source_offset) == (3, 41)
    assert ("value" in record.truncated) == (value_size > MAX_VALUE_BYTES)
    assert ("key" in record.truncated) == (key is not None and len(key) > MAX_KEY_BYTES)
    ours = [
        (name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), v or b"")
        for name, v in original
        if not name.startswith(OWN_HEADER_PREFIXES)
    ]
    assert "headers" not in record.truncated  # 8 small headers fit in MAX_HEADERS_BYTES
    assert record.original_headers() == ours


def test_headers_past_the_budget_are_named_as_cut() -> None:
    many = [(f"h{n}", b"x" * 1000) for n in range(MAX_HEADERS_BYTES // 1000 + 1)]

    record = read_back(b"acct", b"{}", many, DlqCode.WRONG_KEY)

    assert record.truncated == ["headers"]


@given(
    raw=st.lists(st.tuples(st.text(max_size=30), st.binary(max_size=50)), max_size=10),
    key=st.binary(max_size=100) | st.none(),
    value=st.binary(max_size=300) | st.none(),
)
def test_any_record_in_the_dlq_is_read_and_shown(
    raw: list[tuple[str, bytes]], key: bytes | None, value: bytes | None
) -> None:
    record = DlqRecord(0, 0, 0, key, value, -1 if value is None else len(value), raw)

    assert isinstance(record.code, str)
    assert record.source_partition is None or isinstance(record.source_partition, int)
    assert record.source_offset is None or isinstance(record.source_offset, int)
    assert all(isinstance(part, str) for part in record.truncated)
    for data in (key, value, *[v for _, v in raw]):
        shown = _text(data)
        assert shown.isprintable()
        if data is not None and shown.startswith("hex:"):
            assert bytes.fromhex(shown[4:]) == data
