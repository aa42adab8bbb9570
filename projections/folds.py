"""What the read models must equal: the aggregate's state and folds of the stored events
(`credits reconcile` and the read-model tests compare them with `projections/reconcile.py`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from domain.account import Account
from domain.catalog import Catalog

BALANCE_FIELDS = (
    "available",
    "spendable",
    "held",
    "allocation_remaining",
    "purchased_remaining",
    "next_reset_at",
)


def expected_balances(account: Account, catalog: Catalog) -> dict[str, dict[str, Any]]:
    """The aggregate's balances for every credit type that has a balance row or is non-zero."""
    return {ct: {k: b[k] for k in BALANCE_FIELDS} for ct, b in account.balances(catalog).items()}


def projected_balances(rows: list[dict[str, Any]], catalog: Catalog) -> dict[str, dict[str, Any]]:
    found = {row["credit_type"]: row for row in rows}
    zero = dict.fromkeys(BALANCE_FIELDS, 0) | {"next_reset_at": None}
    return {
        ct: {k: found[ct][k] for k in BALANCE_FIELDS} if ct in found else zero
        for ct in catalog.credit_types
    }


def expected_lots(account: Account) -> dict[str, tuple[Any, ...]]:
    return {
        lot.lot_id: (lot.credit_type, lot.remaining, lot.held, lot.closed)
        for lot in account.lots.values()
        if lot.remaining > 0
    }


def projected_lots(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {r["lot_id"]: (r["credit_type"], r["remaining"], r["held"], r["closed"]) for r in rows}


def expected_holds(account: Account) -> dict[str, tuple[str, int]]:
    return {h.hold_id: (h.credit_type, h.amount) for h in account.holds.values()}


def projected_holds(rows: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    return {r["hold_id"]: (r["credit_type"], r["amount"]) for r in rows}


def expected_resource_use(account: Account) -> dict[str, int]:
    """Units used per resource on the last day the account counted (UTC)."""
    return {r: n for r, n in account.usage.by_resource.items() if n}


def usage_fold(events: list[Any]) -> dict[tuple[str, str, str], Counter[str]]:
    """Σ quantity and priced cost per (day, action, credit type), straight from the events."""
    usage: dict[tuple[str, str, str], Counter[str]] = {}
    for e in events:
        if isinstance(e, Account.Consumed | Account.Reserved):
            key = (e.day, e.action or "", e.credit_type)
            usage.setdefault(key, Counter()).update({"count": e.quantity, "cost": e.amount})
    return usage


def spent_fold(events: list[Any]) -> int:
    """Credits spent: consumed plus captured (in parts or at once)."""
    spending = Account.Consumed | Account.Captured | Account.PartCaptured
    return sum(e.amount for e in events if isinstance(e, spending))
