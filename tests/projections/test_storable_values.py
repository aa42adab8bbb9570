"""What the read models store: any text made storable and kept distinct, any time in UTC, any
integer exact (`numeric` read and written as int), and old bigint columns widened in place."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
from eventsourcing.persistence import JSONTranscoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.event_mapper import register_ledger_transcodings
from projections.balances import BalancesProjection
from projections.read_side import ReadSide
from projections.storable import (
    FREE_TEXT_BYTES,
    KEY_TEXT_BYTES,
    plainly_storable,
    storable_event,
    storable_text,
    storable_time,
)
from projections.store import ensure_tables
from projections.usage import UsageProjection

# Every code point, lone surrogates and NUL included.
any_text = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=1500
)
bounds = st.sampled_from((KEY_TEXT_BYTES, FREE_TEXT_BYTES))


@given(text=any_text, max_bytes=bounds)
def test_any_text_becomes_storable_within_its_bound_and_stays_so(text: str, max_bytes: int) -> None:
    stored = storable_text(text, max_bytes)
    assert "\x00" not in stored
    assert len(stored.encode()) <= max_bytes  # UTF-8, so no lone surrogate either
    assert storable_text(stored, max_bytes) == stored


@given(text=any_text, max_bytes=bounds)
def test_text_postgres_can_hold_within_the_bound_is_stored_as_it_is(
    text: str, max_bytes: int
) -> None:
    try:
        fits = "\x00" not in text and len(text.encode()) <= max_bytes
    except UnicodeEncodeError:
        fits = False
    assert (storable_text(text, max_bytes) == text) == fits


@given(first=any_text, second=any_text, max_bytes=bounds)
def test_distinct_texts_stay_distinct(first: str, second: str, max_bytes: int) -> None:
    if first != second:
        assert storable_text(first, max_bytes) != storable_text(second, max_bytes)


def test_distinct_texts_that_escape_alike_stay_distinct() -> None:
    nul, escaped = "pi_\x00", "pi_\\u0000"
    assert storable_text(nul) != storable_text(escaped) == escaped
    assert storable_text(nul).startswith(escaped + "#")
    long = "z" * 10_000
    assert storable_text(long) != storable_text(long + "z")


@given(
    at=st.datetimes(),
    offset_minutes=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)
def test_any_time_becomes_utc_or_the_end_of_the_range(at: datetime, offset_minutes: int) -> None:
    aware = at.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    stored = storable_time(aware)
    assert stored.tzinfo is UTC
    try:
        expected = aware.astimezone(UTC)
    except OverflowError:
        expected = (
            datetime.max.replace(tzinfo=UTC) if at.year > 1 else datetime.min.replace(tzinfo=UTC)
        )
    assert stored == expected


@pytest.mark.integration
async def test_numeric_columns_read_and_write_exact_ints_of_any_size(read_side: ReadSide) -> None:
    async with read_side.pool.acquire() as conn:

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
            database=None,
        )
        @given(
            value=st.one_of(
                st.integers(),
                st.integers(-(10**4000), 10**4000),
                st.sampled_from((0, 1, -1, 9_999, 10_000, 2**63 - 1, 2**63, -(2**63) - 1)),
            )
        )
        def round_trip(value: int) -> None:
            ints.append(value)

        ints: list[int] = []
        round_trip()
        for value in ints:
            text = await conn.fetchval("SELECT $1::numeric::text", value)
            assert text == str(value)
            back = await conn.fetchval("SELECT $1::text::numeric", str(value))
            assert (back, type(back)) == (value, int)
        for text in ("1.5", "-0.0001", "10000.00", "12345678901234567890.000000000001", "NaN"):
            back = await conn.fetchval("SELECT $1::text::numeric", text)
            assert isinstance(back, Decimal)
            assert str(back) == str(Decimal(text)) or (back.is_nan() and text == "NaN")
            assert await conn.fetchval("SELECT $1::numeric::text", Decimal(text)) == text


@pytest.mark.integration
async def test_bigint_columns_of_an_older_schema_are_widened_to_numeric(
    read_side: ReadSide,
) -> None:
    usage = UsageProjection(read_side.catalog)
    table = next(t for t in usage.tables if t.name == "rm_usage_daily")
    old = "test_widen"
    async with read_side.pool.acquire() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {table.name}{old}")
        await conn.execute(table.create_sql(table.name + old).replace("numeric", "bigint"))
        await conn.execute(
            f"INSERT INTO {table.name}{old} VALUES ('a', '2024-02-29', 'x', 'credits', "
            f"{2**63 - 1}, 2, 3, '{{}}')"
        )
        await ensure_tables(conn, [usage], old)
        types = dict(
            await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = $1",
                table.name + old,
            )
        )
        assert {c: types[c] for c in ("count", "credits", "cost")} == dict.fromkeys(
            ("count", "credits", "cost"), "numeric"
        )
        await conn.execute(f"UPDATE {table.name}{old} SET count = count + 1")
        assert await conn.fetchval(f"SELECT count FROM {table.name}{old}") == 2**63
        for t in usage.tables:
            await conn.execute(f"DROP TABLE {t.name}{old}")
        await conn.execute("DELETE FROM rm_tracking WHERE projection = $1", usage.name + old)


@pytest.mark.integration
async def test_a_column_added_since_a_table_was_made_is_added_to_it(read_side: ReadSide) -> None:
    """`rm_balances` made before `spendable`: the column comes at start, null in the rows there
    (until their account moves or a rebuild), so the projector can write the table again."""
    balances = BalancesProjection(read_side.catalog)
    table = next(t for t in balances.tables if t.name == "rm_balances")
    old = "test_added"
    async with read_side.pool.acquire() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {table.name}{old}")
        await conn.execute(
            table.create_sql(table.name + old).replace(", spendable numeric NOT NULL", "")
        )
        await conn.execute(
            f"INSERT INTO {table.name}{old} (account_id, credit_type, available, held, "
            "allocation_remaining, purchased_remaining, overdraft, debt) "
            "VALUES ('a', 'credits', 5, 0, 5, 0, 0, 0)"
        )
        await ensure_tables(conn, [balances], old)
        row = await conn.fetchrow(f"SELECT * FROM {table.name}{old}")
        assert (row["available"], row["spendable"]) == (5, None)
        await conn.execute(f"UPDATE {table.name}{old} SET spendable = 5")
        for t in balances.tables:
            await conn.execute(f"DROP TABLE {t.name}{old}")
        await conn.execute("DELETE FROM rm_tracking WHERE projection = $1", balances.name + old)


def _offset_zone(seconds: int) -> timezone:
    return timezone(timedelta(seconds=seconds))


# Free-text fields have the larger bound; any other name the key bound.
_FIELD_NAMES = ("command_id", "reason", "payment_reference", "breakdown", "timestamp", "tags")
# Values an event's fields may hold: any text, times at any offset (seconds included), integers
# of any size, and lists and objects of them, as the ledger's transcoder stores them.
_event_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | any_text
    | st.datetimes(timezones=st.timezones() | st.builds(_offset_zone, st.integers(-86399, 86399))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.dictionaries(st.sampled_from(_FIELD_NAMES), _event_values, max_size=6),
    originator_id=any_text,
)
def test_an_event_said_plainly_storable_is_one_the_walk_leaves_as_it_is(
    fields: dict[str, object], originator_id: str
) -> None:
    """The rebuild skips the walk when the stored JSON says it would change nothing: whenever
    it says so, the walk must indeed change nothing."""
    transcoder = JSONTranscoder()
    register_ledger_transcodings(transcoder)
    # As the ledger stores it, or (text it cannot encode as UTF-8) as another writer could:
    # with `\u` escapes.
    try:
        state = transcoder.encode(fields)
    except UnicodeEncodeError:
        escaping = json.JSONEncoder(default=transcoder.encoder.default, separators=(",", ":"))
        state = escaping.encode(fields).encode()

    def decoded() -> SimpleNamespace:
        # As the log decodes a row: the stream's id comes from its own column, not the JSON.
        return SimpleNamespace(**transcoder.decode(state), originator_id=originator_id)

    walked = storable_event(decoded())
    skipped = storable_event(decoded(), state)
    assert vars(skipped) == vars(walked)
    if plainly_storable(state):
        assert {**vars(walked), "originator_id": originator_id} == vars(decoded())


def test_the_ledgers_events_are_plainly_storable() -> None:
    """What the ledger stores today (ASCII ids, UTC times) takes the fast way."""
    transcoder = JSONTranscoder()
    register_ledger_transcodings(transcoder)
    at = datetime(2024, 1, 1, 9, tzinfo=UTC)
    state = transcoder.encode(
        {"timestamp": at, "command_id": "b1-2", "breakdown": [{"lot_id": "lot-2", "amount": 1}]}
    )
    assert plainly_storable(state)
    assert not plainly_storable(
        transcoder.encode({"at": at.astimezone(timezone(timedelta(hours=5)))})
    )
    assert not plainly_storable(transcoder.encode({"reason": "x\x00"}))
    assert not plainly_storable(transcoder.encode({"reason": "é"}))
    assert not plainly_storable(transcoder.encode({"reason": "z" * KEY_TEXT_BYTES}))
