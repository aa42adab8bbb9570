"""A read side of a test's own over raw stored events: storing events as the ledger would,
catching every projection up, and checking that each read model equals the fold of the events.

Each test gets a database of its own, so the sums over all accounts are that test's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from domain.account import Account
from domain.catalog import Catalog
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from projections.folds import origins_fold, projected_origins
from projections.read_side import ReadSide, open_read_side
from projections.reconcile import paid_and_owed
from tests.databases import drop_database
from tests.projections import storable_folds as folds
from tests.projections.extreme_streams import RawStore

SPLIT = ("paid_available", "paid_held", "owed")

_databases = itertools.count()


@dataclass
class Side:
    read_side: ReadSide
    store: RawStore
    # The accounts whose events are all projectable: what `assert_equal_to_the_fold` checks.
    accounts: list[str]


@contextlib.asynccontextmanager
async def own_side(base_settings: Settings, settings: Settings) -> AsyncIterator[Side]:
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
        await asyncio.to_thread(drop_database, base_settings, own.pg_database)


def _as_stored(field: str, value: Any) -> Any:
    if isinstance(value, str):
        return folds.free(value) if field in ("payment_reference", "reason") else folds.key(value)
    return folds.when(value) if isinstance(value, datetime) else value


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
    split: dict[str, Counter[str]] = {}
    async with pool.acquire() as conn:
        for account_id_ in side.accounts:
            events = every[account_id_]
            account = folds.fold(events)
            await _assert_account(conn, account_id_, account, events, side.read_side.catalog)
            for credit_type in folds.credit_types(events):
                outstanding[folds.key(credit_type)] += account.available(credit_type)
                held[folds.key(credit_type)] += account.held(credit_type)
                terms = zip(SPLIT, paid_and_owed(account, credit_type), strict=True)
                split.setdefault(folds.key(credit_type), Counter()).update(dict(terms))
        rows = await conn.fetch("SELECT * FROM rm_analytics_outstanding")
        assert {
            r["credit_type"]: (r["available"], r["held"])
            for r in rows
            if r["credit_type"] not in others
        } == {ct: (outstanding[ct], held[ct]) for ct in outstanding.keys() | held.keys()}
        rows = await conn.fetch("SELECT * FROM rm_analytics_outstanding_split")
        assert {
            r["credit_type"]: tuple(r[c] for c in SPLIT)
            for r in rows
            if r["credit_type"] not in others and any(r[c] for c in SPLIT)
        } == {
            ct: tuple(terms[c] for c in SPLIT) for ct, terms in split.items() if any(terms.values())
        }
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
    conn: Any, account_id_: str, account: Account, events: list[Account.Event], catalog: Catalog
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
    expected = folds.balances(account, events, catalog)
    assert projected == {ct: v for ct, v in expected.items() if ct in projected}
    zero = {"next_reset_at": None} | dict.fromkeys(
        (
            "available",
            "spendable",
            "held",
            "allocation_remaining",
            "purchased_remaining",
            "overdraft",
            "debt",
        ),
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

    rows = await conn.fetch("SELECT * FROM rm_resource_limits WHERE account_id = $1", stored_id)
    assert {r["resource"]: r["daily_limit"] for r in rows} == {
        folds.key(resource): limit for resource, limit in account.resource_limits.items()
    }
    rows = await conn.fetch("SELECT * FROM rm_usage_resources WHERE account_id = $1", stored_id)
    assert {(r["day"], r["resource"]): r["count"] for r in rows} == folds.resource_use(events)

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
    # Each row's origin: what its event names, as stored (text cut to fit, times in UTC).
    origins = {
        version: {field: folds.aware(value) for field, value in origin.items()}
        for version, origin in projected_origins([dict(r) for r in rows]).items()
    }
    named = origins_fold(events)
    assert origins == {
        version: {field: _as_stored(field, value) for field, value in named[version].items()}
        for version in origins
    }
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
