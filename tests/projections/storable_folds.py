"""What every read model must hold for streams with extreme values: the fold of the stored
events (the aggregate's state, sums over the events), with text and times in their storable
form (`projections/storable.py`)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from domain.account import Account
from domain.catalog import Catalog
from projections.storable import FREE_TEXT_BYTES, storable_text, storable_time
from projections.usage import usage_day


def key(text: str) -> str:
    return storable_text(text)


def free(text: str | None) -> str | None:
    return None if text is None else storable_text(text, FREE_TEXT_BYTES)


def when(at: datetime | None) -> datetime | None:
    """As stored: in UTC; the ends of Python's range come back from ±infinity without a zone."""
    return None if at is None else aware(storable_time(at))


def aware(at: Any) -> Any:
    return at.replace(tzinfo=UTC) if isinstance(at, datetime) and at.tzinfo is None else at


def fold(events: list[Account.Event]) -> Account:
    account: Any = None
    for event in events:
        account = event.mutate(account)
    assert isinstance(account, Account)
    return account


def credit_types(events: list[Account.Event]) -> set[str]:
    found = {e.credit_type for e in events if isinstance(getattr(e, "credit_type", None), str)}  # type: ignore[attr-defined]
    for e in events:
        if isinstance(e, Account.PlanChanged):
            found.update(c["credit_type"] for c in e.closed_allocations)
    return found


def resource_use(events: list[Account.Event]) -> dict[tuple[Any, str], int]:
    """Units per (UTC day, resource) of the consumes and reserves that name a resource."""
    used: Counter[tuple[Any, str]] = Counter()
    for e in events:
        if isinstance(e, Account.Consumed | Account.Reserved) and e.resource is not None:
            used[(usage_day(e.day, e.timestamp), key(e.resource))] += e.quantity
    return dict(used)


def balances(
    account: Account, events: list[Account.Event], catalog: Catalog
) -> dict[str, dict[str, Any]]:
    result = {}
    for credit_type in credit_types(events):
        lots = [lot for lot in account.lots.values() if lot.credit_type == credit_type]
        allocation = account.allocations.get(credit_type)
        known = credit_type in catalog.credit_types
        may_spend = not known or catalog.may_spend_purchased(account.plan, credit_type)
        result[key(credit_type)] = {
            "available": account.available(credit_type),
            "spendable": account.spendable(credit_type, may_spend),
            "held": account.held(credit_type),
            "allocation_remaining": sum(lot.unheld for lot in lots if lot.source == "allocation"),
            "purchased_remaining": sum(lot.unheld for lot in lots if lot.paid),
            "overdraft": account.owed.overdraft.get(credit_type, 0),
            "debt": account.owed.debt.get(credit_type, 0),
            "next_reset_at": when(allocation.period_end) if allocation else None,
        }
    return result


def lots(account: Account) -> dict[str, tuple[Any, ...]]:
    return {
        key(lot.lot_id): (
            key(lot.credit_type),
            key(lot.source),
            lot.amount,
            lot.remaining,
            lot.held,
            lot.revoked,
            lot.priority,
            lot.paid,
            lot.closed,
            when(lot.effective_at),
            when(lot.expires_at),
            free(lot.payment_reference),
        )
        for lot in account.lots.values()
        if lot.remaining > 0
    }


LOT_COLUMNS = (
    "credit_type",
    "source",
    "amount",
    "remaining",
    "held",
    "revoked",
    "priority",
    "paid",
    "closed",
    "granted_at",
    "expires_at",
    "payment_reference",
)


def holds(account: Account) -> dict[str, tuple[Any, ...]]:
    return {
        key(hold.hold_id): (
            key(hold.credit_type),
            None if hold.action is None else key(hold.action),
            hold.amount,
            when(hold.expires_at),
        )
        for hold in account.holds.values()
    }


def usage(events: list[Account.Event]) -> dict[tuple[Any, ...], Counter[str]]:
    """Σ quantity and priced cost per (UTC day, action, credit type)."""
    found: dict[tuple[Any, ...], Counter[str]] = {}
    for e in events:
        if isinstance(e, Account.Consumed | Account.Reserved):
            day = usage_day(key(e.day), storable_time(e.timestamp))
            row = (day, key(e.action or ""), key(e.credit_type))
            found.setdefault(row, Counter()).update({"count": e.quantity, "cost": e.amount})
    return found


def spent(events: list[Account.Event]) -> int:
    spending = Account.Consumed | Account.Captured | Account.PartCaptured
    return sum(e.amount for e in events if isinstance(e, spending))


def revenue(events: list[Account.Event]) -> dict[tuple[str, str, str], Counter[str]]:
    found: dict[tuple[str, str, str], Counter[str]] = {}
    for e in events:
        if isinstance(e, Account.Granted) and e.paid:
            row = (key(e.source), key(e.pack or ""), key(e.currency or ""))
            found.setdefault(row, Counter()).update(
                {"purchases": 1, "amount_cents": e.amount_paid_cents or 0, "credits": e.amount}
            )
    return found
