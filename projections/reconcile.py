"""Read models against the fold of the events: what `credits reconcile` and the read-model
tests compare, account by account (`projections/folds.py` says what each model must equal).

A live system moves while it is compared, so each account is read in one REPEATABLE READ
snapshot: the read models' rows, the projections' positions, and the account's last event. An
account with an event that some projection has not reached yet is `moving`: not compared (its
rows may rightly be behind), never a mismatch. Otherwise the aggregate is folded from the
store at exactly the version that snapshot saw, so later commands cannot make a false mismatch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.account import Account
from domain.catalog import Catalog
from infra.ledger_application import LedgerApplication
from projections import queries
from projections.event_log import EventLog
from projections.folds import (
    ORIGIN_FIELDS,
    expected_balances,
    expected_holds,
    expected_lots,
    expected_resource_use,
    origins_fold,
    projected_balances,
    projected_holds,
    projected_lots,
    projected_origins,
    spent_fold,
    usage_fold,
)
from projections.store import TRACKING

# `--sample` and the accounts of one run: a bound on what one reconcile reads.
MAX_ACCOUNTS = 10_000_000


@dataclass(frozen=True)
class Mismatch:
    account_id: str
    read_model: str
    # What the read model holds, then what the events give.
    found: Any
    expected: Any

    def __str__(self) -> str:
        return (
            f"{self.account_id}: {self.read_model} holds {self.found!r}, "
            f"the events give {self.expected!r}"
        )


@dataclass(frozen=True)
class Compared:
    """One account's comparison: `mismatches` empty when every read model agrees."""

    account_id: str
    mismatches: list[Mismatch]
    # The folded account (None when it has no events or could not be folded).
    account: Account | None


async def account_ids(conn: asyncpg.Connection, log: EventLog, sample: int | None) -> list[str]:
    """Every account with a stream (each stream starts at version 1), or `sample` at random;
    read models are checked against the events, so accounts come from the events."""
    limit = MAX_ACCOUNTS if sample is None else min(sample, MAX_ACCOUNTS)
    order = "originator_id" if sample is None else "random()"
    rows = await conn.fetch(
        f"SELECT originator_id FROM {log.table} WHERE originator_version = 1 "
        f"ORDER BY {order} LIMIT $1",
        limit,
    )
    return [row[0] for row in rows]


async def rows_without_events(conn: asyncpg.Connection, log: EventLog) -> list[str]:
    """Accounts the read models hold and the event store does not: none may exist."""
    rows = await conn.fetch(
        f"SELECT account_id FROM rm_accounts a WHERE NOT EXISTS (SELECT 1 FROM {log.table} e "
        "WHERE e.originator_id = a.account_id AND e.originator_version = 1) "
        "ORDER BY account_id LIMIT $1",
        MAX_ACCOUNTS,
    )
    return [row[0] for row in rows]


async def compare_account(
    conn: asyncpg.Connection,
    log: EventLog,
    app: LedgerApplication,
    catalog: Catalog,
    projections: Sequence[str],
    account_id: str,
) -> Compared | None:
    """The read models of one account against its events; None when it is `moving`."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        tracked = dict(
            await conn.fetch(
                f"SELECT projection, position FROM {TRACKING} WHERE projection = ANY($1::text[])",
                list(projections),
            )
        )
        reached = min(tracked.get(name, 0) for name in projections)
        last = await conn.fetchrow(
            "SELECT max(notification_id) AS position, max(originator_version) AS version "
            f"FROM {log.table} WHERE originator_id = $1",
            account_id,
        )
        if last["position"] is not None and last["position"] > reached:
            return None
        rows = await _rows(conn, account_id)
    if last["version"] is None:
        found = "a row" if rows["account"] is not None else None
        return Compared(account_id, [Mismatch(account_id, "rm_accounts", found, None)], None)
    version = int(last["version"])
    try:
        account, events = await asyncio.to_thread(_fold, app, account_id, version)
    except Exception as error:  # any stored event: the report names it, the run goes on
        reason = f"cannot fold the events: {type(error).__name__}: {error}"
        return Compared(account_id, [Mismatch(account_id, "events", reason, None)], None)
    return Compared(account_id, _differences(account_id, rows, account, events, catalog), account)


async def outstanding_mismatches(
    conn: asyncpg.Connection, accounts: Sequence[Account], catalog: Catalog
) -> list[Mismatch]:
    """Credits outstanding (analytics) against Σ available and Σ held over `accounts`, which
    must be every account, folded at the read model's position."""
    totals: dict[str, tuple[int, int]] = {}
    for account in accounts:
        for credit_type in catalog.credit_types:
            available, held = totals.get(credit_type, (0, 0))
            totals[credit_type] = (
                available + account.available(credit_type),
                held + account.held(credit_type),
            )
    rows = await conn.fetch("SELECT credit_type, available, held FROM rm_analytics_outstanding")
    found = {r["credit_type"]: (r["available"], r["held"]) for r in rows}
    mismatches = []
    for credit_type in sorted(set(found) | set(totals)):
        holds, gives = found.get(credit_type, (0, 0)), totals.get(credit_type, (0, 0))
        if holds != gives:
            read_model = f"rm_analytics_outstanding[{credit_type}] (available, held)"
            mismatches.append(Mismatch("(all accounts)", read_model, holds, gives))
    return mismatches + await _split_mismatches(conn, accounts, catalog)


def paid_and_owed(account: Account, credit_type: str) -> tuple[int, int, int]:
    """(unheld in paid lots, held in paid lots, owed) of one account: the split's terms."""
    paid = [lot for lot in account.lots.values() if lot.paid and lot.credit_type == credit_type]
    return (
        sum(lot.unheld for lot in paid),
        sum(lot.held for lot in paid),
        account.owed.of(credit_type),
    )


async def _split_mismatches(
    conn: asyncpg.Connection, accounts: Sequence[Account], catalog: Catalog
) -> list[Mismatch]:
    """The paid and owed parts of what is outstanding against the same sums of the fold."""
    totals: dict[str, tuple[int, int, int]] = {}
    for account in accounts:
        for credit_type in catalog.credit_types:
            terms = paid_and_owed(account, credit_type)
            before = totals.get(credit_type, (0, 0, 0))
            totals[credit_type] = (
                before[0] + terms[0],
                before[1] + terms[1],
                before[2] + terms[2],
            )
    rows = await conn.fetch(
        "SELECT credit_type, paid_available, paid_held, owed FROM rm_analytics_outstanding_split"
    )
    found = {r["credit_type"]: (r["paid_available"], r["paid_held"], r["owed"]) for r in rows}
    mismatches = []
    for credit_type in sorted(set(found) | set(totals)):
        holds, gives = found.get(credit_type, (0, 0, 0)), totals.get(credit_type, (0, 0, 0))
        if holds != gives:
            read_model = f"rm_analytics_outstanding_split[{credit_type}] (paid, paid held, owed)"
            mismatches.append(Mismatch("(all accounts)", read_model, holds, gives))
    return mismatches


def _fold(app: LedgerApplication, account_id: str, version: int) -> tuple[Account, list[Any]]:
    account: Account = app.repository.get(account_id, version=version)
    return account, list(app.events.get(account_id, lte=version))


async def _rows(conn: asyncpg.Connection, account_id: str) -> dict[str, Any]:
    return {
        "account": await queries.account(conn, account_id),
        "balances": await queries.balances(conn, account_id),
        "lots": await queries.lots(conn, account_id),
        "holds": await queries.holds(conn, account_id),
        "heads": dict(
            await conn.fetch(
                "SELECT credit_type, available FROM rm_transaction_heads WHERE account_id = $1",
                account_id,
            )
        ),
        "resource_limits": dict(
            await conn.fetch(
                "SELECT resource, daily_limit FROM rm_resource_limits WHERE account_id = $1",
                account_id,
            )
        ),
        "resource_use": await conn.fetch(
            "SELECT day, resource, count FROM rm_usage_resources WHERE account_id = $1",
            account_id,
        ),
        "usage": await conn.fetch(
            "SELECT day, action, credit_type, count, credits, cost FROM rm_usage_daily "
            "WHERE account_id = $1",
            account_id,
        ),
        "origins": await conn.fetch(
            f"SELECT version, {', '.join(f'origin_{f}' for f in ORIGIN_FIELDS)} "
            "FROM rm_transactions WHERE account_id = $1",
            account_id,
        ),
    }


def _differences(
    account_id: str, rows: dict[str, Any], account: Account, events: list[Any], catalog: Catalog
) -> list[Mismatch]:
    found: list[tuple[str, Any, Any]] = []
    row = rows["account"]
    held = None if row is None else (row["version"], row["plan"])
    found.append(("rm_accounts (version, plan)", held, (account.version, account.plan)))
    balances = projected_balances(rows["balances"], catalog)
    for credit_type, expected in expected_balances(account, catalog).items():
        found.append((f"rm_balances[{credit_type}]", balances.get(credit_type), expected))
    found.append(("rm_lots", projected_lots(rows["lots"]), expected_lots(account)))
    found.append(("rm_holds", projected_holds(rows["holds"]), expected_holds(account)))
    for credit_type in catalog.credit_types:
        available = (rows["heads"].get(credit_type, 0), account.available(credit_type))
        found.append((f"rm_transaction_heads[{credit_type}].available", *available))
    limits = dict(account.resource_limits)
    found.append(("rm_resource_limits", rows["resource_limits"], limits))
    day = account.usage.day
    used = {r["resource"]: r["count"] for r in rows["resource_use"] if r["day"].isoformat() == day}
    found.append((f"rm_usage_resources[{day}]", used, expected_resource_use(account)))
    usage = {
        (r["day"].isoformat(), r["action"], r["credit_type"]): (r["count"], r["cost"])
        for r in rows["usage"]
        if r["count"] or r["cost"]
    }
    folded = {k: (c["count"], c["cost"]) for k, c in usage_fold(events).items()}
    found.append(("rm_usage_daily (count, cost)", usage, folded))
    spent = sum(r["credits"] for r in rows["usage"])
    found.append(("rm_usage_daily Σ credits", spent, spent_fold(events)))
    origins = projected_origins(rows["origins"])
    folded_origins = origins_fold(events)
    named = {version: folded_origins.get(version) for version in origins}
    found.append(("rm_transactions origin by version", origins, named))
    return [
        Mismatch(account_id, read_model, *_only_differing(holds, gives))
        for read_model, holds, gives in found
        if holds != gives
    ]


def _only_differing(found: Any, expected: Any) -> tuple[Any, Any]:
    """Of two dicts, the entries that differ (a lot among hundreds); other values whole."""
    if not isinstance(found, dict) or not isinstance(expected, dict):
        return found, expected
    keys = [k for k in {**found, **expected} if found.get(k) != expected.get(k)]
    return (
        {k: found[k] for k in keys if k in found},
        {k: expected[k] for k in keys if k in expected},
    )
