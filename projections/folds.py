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


ORIGIN_FIELDS = (
    "source",
    "pack",
    "payment_reference",
    "top_up_id",
    "hold_id",
    "plan",
    "period_id",
    "period_start",
    "period_end",
    "reason",
)


def origins_fold(events: list[Any]) -> dict[int, dict[str, Any]]:
    """The origin a transaction row of each stream version must name, read off each event."""
    folded = {}
    for e in events:
        named = _named_origin(e)
        if named is not None:
            folded[int(e.originator_version)] = dict.fromkeys(ORIGIN_FIELDS) | named
    return folded


def projected_origins(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The origin each version's transaction rows name (one per version: they must agree)."""
    found: dict[int, dict[str, Any]] = {}
    for row in rows:
        origin = {field: row[f"origin_{field}"] for field in ORIGIN_FIELDS}
        if found.setdefault(int(row["version"]), origin) != origin:
            found[int(row["version"])] = {"disagreeing rows": True}
    return found


def _named_origin(e: Any) -> dict[str, Any] | None:
    if isinstance(e, Account.AllocationGranted):
        return {
            "source": "renewal" if isinstance(e, Account.Renewed) else "allocation",
            "plan": e.plan,
            "period_id": e.period_id,
            "period_start": e.period_start,
            "period_end": e.period_end,
            "reason": e.reason,
        }
    if isinstance(e, Account.Granted):
        return {
            "source": e.source,
            "pack": e.pack,
            "payment_reference": e.payment_reference,
            "top_up_id": e.top_up_id,
            "reason": e.reference,
        }
    holds = Account.Reserved | Account.Captured | Account.PartCaptured | Account.Released
    if isinstance(e, holds):
        return {"source": "hold", "hold_id": e.hold_id}
    if isinstance(e, Account.Revoked):
        return {
            "source": "revocation",
            "payment_reference": e.payment_reference,
            "reason": e.reason,
        }
    if isinstance(e, Account.PlanChanged):
        return {"source": "plan_change", "plan": e.to_plan}
    named = {Account.Consumed: "usage", Account.LotExpired: "expiry"}.get(type(e))
    return None if named is None else {"source": named}
