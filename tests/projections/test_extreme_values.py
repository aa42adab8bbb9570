"""No stored value can stop a read model.

Every event kind of `domain/account.py` (enumerated from the code) with extreme values (NUL and
lone surrogates in every text field, text far past the validated lengths, amounts at and past
bigint's range, sums of many maximum amounts, timestamps at the ends of Python's range, days
that are no dates, empty lists and maps) goes through every read model on the real PostgreSQL:
each projection moves past all of them and equals the fold of the stored events.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.account import Account
from domain.catalog import MAX_AMOUNT
from tests.projections import storable_folds as folds
from tests.projections.extreme_streams import (
    EVENT_KINDS,
    EXTREME_AMOUNTS,
    EXTREME_DAYS,
    EXTREME_TEXTS,
    EXTREME_TIMES,
    Extremes,
    account_id,
    extreme_stream,
    overdrawn_stream,
)
from tests.projections.raw_side import Side, assert_equal_to_the_fold, project, store

pytestmark = pytest.mark.integration


texts = st.one_of(
    st.sampled_from(EXTREME_TEXTS),
    st.text(
        st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
        max_size=700,
    ),
)
extremes = st.builds(
    Extremes,
    text=texts,
    other_text=texts,
    amount=st.one_of(st.sampled_from(EXTREME_AMOUNTS), st.integers(10, 10**40)),
    at=st.one_of(
        st.sampled_from(EXTREME_TIMES), st.datetimes(timezones=st.just(UTC), allow_imaginary=False)
    ),
    day=st.one_of(st.sampled_from(EXTREME_DAYS), texts),
).filter(lambda x: folds.key(x.text) != folds.key(x.other_text))


async def test_every_event_kind_with_extreme_values_goes_through_every_read_model(
    side: Side,
) -> None:
    """A fixed grid of the extremes, then generated ones: all projected, each model the fold."""
    kinds: set[type] = set()
    grid = zip(
        EXTREME_TEXTS,
        (*EXTREME_TEXTS[1:], EXTREME_TEXTS[0]),
        itertools.cycle(EXTREME_AMOUNTS),
        itertools.cycle(EXTREME_TIMES),
        itertools.cycle(EXTREME_DAYS),
        strict=False,
    )
    suffixes = itertools.cycle(("", "é" * 300, "x" * 1000))
    for text, other, amount, at, day in grid:
        events = extreme_stream(account_id(next(suffixes)), Extremes(text, other, amount, at, day))
        kinds.update(type(e) for e in events)
        side.accounts.append(events[0].originator_id)
        await store(side, events)
    assert kinds == EVENT_KINDS, sorted(k.__name__ for k in EVENT_KINDS - kinds)
    await project(side)
    await assert_equal_to_the_fold(side)

    loop = asyncio.get_running_loop()
    examples: list[Extremes] = []

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    @given(x=extremes)
    def generated(x: Extremes) -> None:
        events = extreme_stream(account_id(), x)
        side.accounts.append(events[0].originator_id)

        async def check() -> None:
            await store(side, events)
            await project(side)
            await assert_equal_to_the_fold(side)

        asyncio.run_coroutine_threadsafe(check(), loop).result()
        examples.append(x)

    await asyncio.to_thread(generated)
    assert len(examples) == 25
    async with side.read_side.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rm_skipped_events") == 0


async def test_sums_of_many_maximum_amounts_stay_exact_past_bigint(side: Side) -> None:
    spends = 9_300  # 9,300 x 10^15 > 2^63 - 1
    events = overdrawn_stream(account_id(), spends)
    side.accounts.append(events[0].originator_id)
    await store(side, events)
    await project(side)
    await assert_equal_to_the_fold(side)
    total = spends * MAX_AMOUNT
    assert total > 2**63
    async with side.read_side.pool.acquire() as conn:
        balance = await conn.fetchrow("SELECT * FROM rm_balances")
        assert (balance["available"], balance["overdraft"]) == (-total, total)
        usage = await conn.fetchrow("SELECT * FROM rm_usage_daily")
        assert (usage["count"], usage["credits"], usage["cost"]) == (spends, total, total)
        assert await conn.fetchval("SELECT available FROM rm_analytics_outstanding") == -total


async def test_values_at_the_validated_maximum_lengths_are_stored_as_they_are(side: Side) -> None:
    """What a command may carry is never rewritten: 128-character identifiers and command ids,
    a 256-character payment reference of 4-byte characters (1,024 bytes)."""
    identifier = "a" * 64 + ":" * 32 + "@" * 32
    reference = "😀" * 256
    command_id = "😀" * 128
    x = Extremes(identifier, "b" * 128, MAX_AMOUNT, datetime(2024, 2, 29, tzinfo=UTC), "2024-02-29")
    events = extreme_stream(account_id(), x)
    for event in events:
        object.__setattr__(event, "command_id", command_id)
    granted = next(e for e in events if isinstance(e, Account.Granted) and e.paid)
    object.__setattr__(granted, "payment_reference", reference)
    side.accounts.append(events[0].originator_id)
    await store(side, events)
    await project(side)
    await assert_equal_to_the_fold(side)
    async with side.read_side.pool.acquire() as conn:
        lot = await conn.fetchrow("SELECT credit_type, payment_reference FROM rm_lots WHERE paid")
        commands = await conn.fetch("SELECT DISTINCT command_id FROM rm_transactions")
        actions = await conn.fetch("SELECT DISTINCT action FROM rm_usage_daily")
    assert (lot["credit_type"], lot["payment_reference"]) == (identifier, reference)
    assert [r["command_id"] for r in commands] == [command_id]
    assert {r["action"] for r in actions} == {identifier, "b" * 128, ""}
