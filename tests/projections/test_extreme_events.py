"""No stored event can stop a read model.

Every event kind of `domain/account.py` (enumerated from the code) with extreme values (NUL and
lone surrogates in every text field, text far past the validated lengths, amounts at and past
bigint's range, sums of many maximum amounts, timestamps at the ends of Python's range, days
that are no dates, empty lists and maps) goes through every read model on the real PostgreSQL:
each projection moves past all of them and equals the fold of the stored events. Events that no
code can apply (unknown kinds, broken JSON, missing fields, events the state refutes) are
skipped and recorded, never retried for ever, and a rebuild skips the same ones.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from domain.account import Account
from domain.catalog import MAX_AMOUNT
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.retry import Backoff, retry
from infra.settings import Settings
from projections.batch import BatchState
from projections.projector import Projector
from projections.read_side import ReadSide, open_read_side
from projections.rebuild import rebuild
from projections.store import checksum, ensure_tables
from projections.tables import EXACT_INT, TEXT, Table
from tests.projections import storable_folds as folds
from tests.projections.extreme_streams import (
    EVENT_KINDS,
    EXTREME_AMOUNTS,
    EXTREME_DAYS,
    EXTREME_TEXTS,
    EXTREME_TIMES,
    Extremes,
    RawStore,
    account_id,
    extreme_stream,
    overdrawn_stream,
)

pytestmark = pytest.mark.integration

_databases = itertools.count()


@dataclass
class Side:
    read_side: ReadSide
    store: RawStore
    # The accounts whose events are all projectable: what `assert_equal_to_the_fold` checks.
    accounts: list[str]


@pytest.fixture
async def side(base_settings: Settings, settings: Settings) -> AsyncIterator[Side]:
    """A database of this test's own: its sums over all accounts are this test's alone."""
    own = settings.model_copy(update={"pg_database": f"{settings.pg_database}_x{next(_databases)}"})
    identifier = sql.Identifier(own.pg_database)
    await asyncio.to_thread(_admin, base_settings, sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        app = LedgerApplication(env=event_store_env(own))
        try:
            async with open_read_side(own) as read_side:
                yield Side(read_side, RawStore(app), [])
        finally:
            app.close()
    finally:
        # An autovacuum worker busy with the new tables makes a forced drop fail for want of
        # the privilege to end it; it is done within seconds.
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier)
        await retry(
            lambda: asyncio.to_thread(_admin, base_settings, drop),
            doing=f"drop {own.pg_database}",
            retry_on=(psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse),
            backoff=Backoff(first_seconds=0.2, max_seconds=2.0, max_attempts=30),
        )


def _admin(admin: Settings, statement: sql.Composed) -> None:
    with psycopg.connect(admin.pg_dsn(), autocommit=True) as conn:
        conn.execute(statement)


async def store(side: Side, events: list[Account.Event], **extra: Any) -> None:
    stored = [side.store.stored(event, **extra) for event in events]
    await asyncio.to_thread(side.store.insert, stored)


async def project(side: Side) -> None:
    """Catch every projection up; each must reach the head of the log."""
    read_side = side.read_side
    await read_side.projector().catch_up()
    async with read_side.pool.acquire() as conn:
        head = await read_side.log.max_position(conn)
        rows = await conn.fetch("SELECT projection, position, last_error FROM rm_tracking")
    assert {r["projection"]: (r["position"], r["last_error"]) for r in rows} == dict.fromkeys(
        read_side.projections, (head, None)
    )


async def stored_events(side: Side) -> dict[str, list[Account.Event]]:
    """The stored events of `side.accounts`, decoded as the ledger's mapper does (not made
    storable): what the fold starts from."""
    async with side.read_side.pool.acquire() as conn:
        rows = await side.read_side.log.fetch(conn, 0, 1_000_000)
    events: dict[str, list[Account.Event]] = {}
    for row in rows:
        if row["originator_id"] not in side.accounts:
            continue  # events no code can decode, in other tests
        event = side.read_side.log.decode_with_mapper(row)
        events.setdefault(row["originator_id"], []).append(event)
    return events


async def assert_equal_to_the_fold(side: Side, others: Collection[str] = ()) -> None:
    """Every read model equals the fold of the stored events of `side.accounts`; `others`:
    credit types of other accounts' events, left out of the sums over all accounts."""
    every = await stored_events(side)
    pool = side.read_side.pool
    outstanding: Counter[str] = Counter()
    held: Counter[str] = Counter()
    async with pool.acquire() as conn:
        for account_id_ in side.accounts:
            events = every[account_id_]
            account = folds.fold(events)
            await _assert_account(conn, account_id_, account, events)
            for credit_type in folds.credit_types(events):
                outstanding[folds.key(credit_type)] += account.available(credit_type)
                held[folds.key(credit_type)] += account.held(credit_type)
        rows = await conn.fetch("SELECT * FROM rm_analytics_outstanding")
        assert {
            r["credit_type"]: (r["available"], r["held"])
            for r in rows
            if r["credit_type"] not in others
        } == {ct: (outstanding[ct], held[ct]) for ct in outstanding.keys() | held.keys()}
        revenue: dict[tuple[str, str, str], Counter[str]] = {}
        for account_id_ in side.accounts:
            for row_key, counted in folds.revenue(every[account_id_]).items():
                revenue.setdefault(row_key, Counter()).update(counted)
        rows = await conn.fetch("SELECT * FROM rm_analytics_revenue")
        sums = ("purchases", "amount_cents", "credits")
        assert {
            (r["source"], r["pack"], r["currency"]): tuple(r[c] for c in sums) for r in rows
        } == {k: tuple(v[c] for c in sums) for k, v in revenue.items()}


async def _assert_account(
    conn: Any, account_id_: str, account: Account, events: list[Account.Event]
) -> None:
    stored_id = folds.key(account_id_)
    row = await conn.fetchrow("SELECT * FROM rm_accounts WHERE account_id = $1", stored_id)
    assert row is not None
    assert (row["plan"], row["version"]) == (folds.key(account.plan), account.version)
    assert row["catalog_version"] == folds.key(account.catalog_version)

    rows = await conn.fetch("SELECT * FROM rm_balances WHERE account_id = $1", stored_id)
    projected = {
        r["credit_type"]: {
            k: folds.aware(v) for k, v in dict(r).items() if k not in ("account_id", "credit_type")
        }
        for r in rows
    }
    expected = folds.balances(account, events)
    assert projected == {ct: v for ct, v in expected.items() if ct in projected}
    zero = {"next_reset_at": None} | dict.fromkeys(
        ("available", "held", "allocation_remaining", "purchased_remaining", "overdraft", "debt"),
        0,
    )
    assert all(v == zero for ct, v in expected.items() if ct not in projected)

    rows = await conn.fetch("SELECT * FROM rm_lots WHERE account_id = $1", stored_id)
    assert {
        r["lot_id"]: tuple(folds.aware(r[c]) for c in folds.LOT_COLUMNS) for r in rows
    } == folds.lots(account)
    rows = await conn.fetch("SELECT * FROM rm_holds WHERE account_id = $1", stored_id)
    assert {
        r["hold_id"]: (r["credit_type"], r["action"], r["amount"], folds.aware(r["expires_at"]))
        for r in rows
    } == folds.holds(account)

    # Transactions: a running available per credit type, from 0 to the aggregate's.
    rows = await conn.fetch(
        "SELECT * FROM rm_transactions WHERE account_id = $1 ORDER BY version, credit_type",
        stored_id,
    )
    running: dict[str, int] = {}
    for r in rows:
        assert r["available_before"] == running.get(r["credit_type"], 0), dict(r)
        assert r["available_after"] - r["available_before"] == r["delta"]
        running[r["credit_type"]] = r["available_after"]
        command_id = events[r["version"] - 1].command_id
        assert r["command_id"] == (None if command_id is None else folds.key(command_id))
    heads = dict(
        await conn.fetch(
            "SELECT credit_type, available FROM rm_transaction_heads WHERE account_id = $1",
            stored_id,
        )
    )
    assert heads == running
    for credit_type in folds.credit_types(events):
        assert running.get(folds.key(credit_type), 0) == account.available(credit_type)

    rows = await conn.fetch("SELECT * FROM rm_usage_daily WHERE account_id = $1", stored_id)
    assert {
        (r["day"], r["action"], r["credit_type"]): (r["count"], r["cost"])
        for r in rows
        if r["count"] or r["cost"]
    } == {k: (v["count"], v["cost"]) for k, v in folds.usage(events).items()}
    assert sum(r["credits"] for r in rows) == folds.spent(events)
    consumed_tags = {
        (folds.key(e.action or ""), tuple(folds.key(t) for t in e.tags))
        for e in events
        if isinstance(e, Account.Consumed)
    }
    reserved_actions = {
        folds.key(e.action or "") for e in events if isinstance(e, Account.Reserved)
    }
    for r in rows:
        if r["action"] not in reserved_actions:
            assert (r["action"], tuple(r["tags"])) in consumed_tags

    row = await conn.fetchrow(
        "SELECT * FROM rm_analytics_accounts WHERE account_id = $1", stored_id
    )
    paid = [e for e in events if isinstance(e, Account.Granted) and e.paid]
    opened = events[0]
    assert isinstance(opened, Account.Opened)
    assert (row["first_plan"], row["plan"], row["refills"]) == (
        folds.key(opened.plan),
        folds.key(account.plan),
        len(paid),
    )


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


def _unknown_kind(account: str) -> StoredEvent:
    return StoredEvent(account, 2, "domain.account:Account.FromAFutureVersion", b'{"x":1}')


async def test_events_no_code_can_apply_are_skipped_recorded_and_rebuilt_alike(
    side: Side,
) -> None:
    x = Extremes("\x00", "\ud800", MAX_AMOUNT, EXTREME_TIMES[4], "2024-02-29")
    good = extreme_stream(account_id(), x)
    side.accounts.append(good[0].originator_id)
    # Fields a newer version added, and a newer class version: projected, not skipped.
    newer = extreme_stream(account_id(), x)
    side.accounts.append(newer[0].originator_id)
    poison = overdrawn_stream(account_id(), 3)
    poison_id = poison[0].originator_id
    consumed = poison[1]
    assert isinstance(consumed, Account.Consumed)
    missing_field = side.store.stored(poison[2])
    state = missing_field.state.replace(b'"credit_type":"credits",', b"")
    assert state != missing_field.state
    # Refuted by the state: a capture of a hold that was never reserved.
    captured = Account.Captured(
        originator_id=poison_id,
        originator_version=5,
        timestamp=x.at,
        command_id=None,
        hold_id="never-reserved",
        credit_type="refuted",
        amount=7,
        breakdown=[{"lot_id": "lot-9", "amount": 7}],
        released=[],
        forfeited=0,
    )
    await store(side, good[:10])
    await store(side, newer, a_field_from_a_newer_version={"nested": ["\x00"]}, class_version=9)
    await store(side, poison[:1])
    await asyncio.to_thread(
        side.store.insert,
        [
            _unknown_kind(poison_id),
            StoredEvent(poison_id, 3, missing_field.topic, state),
            StoredEvent(poison_id, 4, missing_field.topic, b'{"broken'),
            side.store.stored(captured),
        ],
    )
    await store(side, good[10:])
    await project(side)
    # The refuted capture moved what transactions and analytics keep of its credit type.
    await assert_equal_to_the_fold(side, others={"refuted"})

    async with side.read_side.pool.acquire() as conn:
        skipped = await conn.fetch(
            "SELECT projection, originator_id, originator_version, topic, error "
            "FROM rm_skipped_events ORDER BY projection, position"
        )
        positions = await conn.fetch(
            "SELECT projection, position FROM rm_skipped_events ORDER BY projection, position"
        )
        before = {
            name: await checksum(conn, projection)
            for name, projection in side.read_side.projections.items()
        }
    by_projection: dict[str, set[int]] = {}
    for r in skipped:
        assert r["originator_id"] == poison_id
        by_projection.setdefault(r["projection"], set()).add(r["originator_version"])
    # Every model skips what does not decode (2: an unknown kind, 4: broken JSON) or lacks a
    # field it reads (3); the capture of a hold never reserved (5) is refused by the models
    # that keep holds, while transactions and analytics take it from its fields alone.
    assert by_projection == {
        "balances": {2, 3, 4, 5},
        "usage": {2, 3, 4, 5},
        "transactions": {2, 3, 4},
        "analytics": {2, 3, 4},
    }
    errors = {(r["projection"], r["originator_version"]): r["error"] for r in skipped}
    assert "FromAFutureVersion" in errors["balances", 2]
    assert "JSONDecodeError" in errors["balances", 4]
    topics = {r["originator_version"]: r["topic"] for r in skipped}
    assert topics[2] == "domain.account:Account.FromAFutureVersion"

    # A rebuild applies and skips the same events: same rows, same checksums, same skips.
    for name, projection in side.read_side.projections.items():
        result = await rebuild(side.read_side.pool, side.read_side.log, projection, batch_events=7)
        assert result.matches, name
        assert result.rebuilt_checksum == before[name]
        assert result.skipped == len(by_projection[name])
    async with side.read_side.pool.acquire() as conn:
        after = await conn.fetch(
            "SELECT projection, position FROM rm_skipped_events ORDER BY projection, position"
        )
    assert [tuple(r) for r in after] == [tuple(r) for r in positions]


async def test_a_nul_in_a_stored_payment_reference_no_longer_stops_balances(
    side: Side,
) -> None:
    """The case seen in the wild: a purchase whose payment_reference holds a NUL."""
    x = Extremes("plain", "other", 4000, datetime(2024, 2, 29, tzinfo=UTC), "2024-02-29")
    events = extreme_stream(account_id(), x)
    granted = next(e for e in events if isinstance(e, Account.Granted) and e.paid)
    nul_reference = "pi_3Q\x00" + uuid.uuid4().hex
    object.__setattr__(granted, "payment_reference", nul_reference)
    side.accounts.append(events[0].originator_id)
    await store(side, events)
    await project(side)
    await assert_equal_to_the_fold(side)
    async with side.read_side.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT payment_reference FROM rm_lots WHERE paid")
    assert stored.startswith("pi_3Q\\u0000") and "\x00" not in stored


class _WritesWhatPostgresRefuses:
    """Counts events per account, but notes a NUL for the accounts named `...-nul`: text
    PostgreSQL refuses when the batch is written, not when the event is applied."""

    name = "refused_writes_test_projection"
    tables: tuple[Table, ...] = (
        Table(
            "rm_test_refused_writes",
            "account",
            (("account_id", TEXT), ("events", EXACT_INT), ("note", TEXT)),
            key=("account_id",),
        ),
    )

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        rows = state.rows("rm_test_refused_writes")
        row = rows.get(event.originator_id) or {
            "account_id": event.originator_id,
            "events": 0,
            "note": "",
        }
        row["events"] += 1
        row["note"] = "\x00" if event.originator_id.endswith("-nul") else "ok"
        rows.put(row)

    def finish(self, state: BatchState) -> None:
        pass


async def test_values_postgres_refuses_at_write_are_skipped_live_and_in_a_rebuild_alike(
    side: Side,
) -> None:
    projection = _WritesWhatPostgresRefuses()
    read_side = side.read_side
    async with read_side.pool.acquire() as conn:
        await ensure_tables(conn, [projection])
    for n in range(12):
        events = overdrawn_stream(account_id("-nul" if n % 4 == 1 else ""), 2)
        await store(side, events)
    projector = Projector(read_side.pool, read_side.log, {projection.name: projection})
    await projector.catch_up()
    async with read_side.pool.acquire() as conn:
        head = await read_side.log.max_position(conn)
        position = await conn.fetchval(
            "SELECT position FROM rm_tracking WHERE projection = $1", projection.name
        )
        skipped = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT position, originator_id FROM rm_skipped_events WHERE projection = $1 "
                "ORDER BY position",
                projection.name,
            )
        ]
        counted = dict(await conn.fetch("SELECT account_id, events FROM rm_test_refused_writes"))
    assert position == head
    # Every event of the three `-nul` accounts, and only those.
    assert len(skipped) == 3 * 3 and all(a.endswith("-nul") for _, a in skipped)
    assert len(counted) == 9 and set(counted.values()) == {3}
    # In a rebuild the refusal comes at the commit of a batch, while the next one is applied.
    result = await rebuild(read_side.pool, read_side.log, projection, batch_events=4)
    assert (result.matches, result.skipped) == (True, len(skipped))
    async with read_side.pool.acquire() as conn:
        after = await conn.fetch(
            "SELECT position, originator_id FROM rm_skipped_events WHERE projection = $1 "
            "ORDER BY position",
            projection.name,
        )
    assert [tuple(r) for r in after] == skipped


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
