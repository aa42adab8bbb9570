"""The analytics read models: revenue per pack and currency, credits outstanding per type
(paid, granted, owed), breakage, free→paid conversions and refills.

- Revenue is gross: every paid grant (`purchase` and `top_up`), by pack (`''` for amount-based
  purchases and top-ups) and currency, in minor units; refunds show in transactions.
- Outstanding: Σ available and Σ held over all accounts, per credit type (from the movements).
- Conversions: an account that opened on a free plan (catalog `price_cents = 0`) converts at its
  first paid grant or its first change to a plan with a price, whichever comes first.
- Refills: paid grants per account; the mean time between them is
  `(last_refill_at - first_refill_at) / (refills - 1)`.
- Per UTC day (the event's timestamp), for reads over a period: revenue
  (`rm_analytics_revenue_daily`), breakage (`rm_analytics_breakage`, projections/breakage.py)
  and refills per account (`rm_analytics_refills`).
- Paid and owed parts of what is outstanding: projections/paid_outstanding.py.
"""

from __future__ import annotations

from datetime import UTC, date

from domain.account import Account
from domain.catalog import Catalog
from projections.batch import BatchState, Row
from projections.breakage import breakage
from projections.movements import movements
from projections.paid_outstanding import OUTSTANDING_SPLIT, PAID_LOTS, apply_split
from projections.tables import (
    BIGINT,
    BOOL,
    EXACT_INT,
    TEXT,
    TEXT_OR_NULL,
    TIME,
    TIME_OR_NULL,
    Table,
    not_null,
)

DAY = not_null("date")

# Revenue is counted by what was sold (source, pack, currency), in all and per day.
_SOLD = (("source", TEXT), ("pack", TEXT), ("currency", TEXT))
_TAKINGS = (("purchases", BIGINT), ("amount_cents", EXACT_INT), ("credits", EXACT_INT))
REVENUE = Table(
    "rm_analytics_revenue",
    "counter",
    (*_SOLD, *_TAKINGS),
    key=("source", "pack", "currency"),
    sums=("purchases", "amount_cents", "credits"),
)
OUTSTANDING = Table(
    "rm_analytics_outstanding",
    "counter",
    (("credit_type", TEXT), ("available", EXACT_INT), ("held", EXACT_INT)),
    key=("credit_type",),
    sums=("available", "held"),
)
ANALYTICS_ACCOUNTS = Table(
    "rm_analytics_accounts",
    "account",
    (
        ("account_id", TEXT),
        ("first_plan", TEXT),
        ("plan", TEXT),
        ("opened_at", TIME),
        ("started_free", BOOL),
        ("converted_at", TIME_OR_NULL),
        ("conversion", TEXT_OR_NULL),
        ("refills", BIGINT),
        ("first_refill_at", TIME_OR_NULL),
        ("last_refill_at", TIME_OR_NULL),
    ),
    key=("account_id",),
)
REVENUE_DAILY = Table(
    "rm_analytics_revenue_daily",
    "counter",
    (("day", DAY), *_SOLD, *_TAKINGS),
    key=("day", "source", "pack", "currency"),
    sums=("purchases", "amount_cents", "credits"),
)
BREAKAGE = Table(
    "rm_analytics_breakage",
    "counter",
    (("day", DAY), ("credit_type", TEXT), ("kind", TEXT), ("credits", EXACT_INT)),
    key=("day", "credit_type", "kind"),
    sums=("credits",),
)
REFILLS = Table(
    "rm_analytics_refills",
    "counter",
    (("day", DAY), ("account_id", TEXT), ("refills", BIGINT)),
    key=("day", "account_id"),
    sums=("refills",),
)


class AnalyticsProjection:
    name = "analytics"
    tables: tuple[Table, ...] = (
        REVENUE,
        OUTSTANDING,
        ANALYTICS_ACCOUNTS,
        REVENUE_DAILY,
        BREAKAGE,
        REFILLS,
        PAID_LOTS,
        OUTSTANDING_SPLIT,
    )

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def finish(self, state: BatchState) -> None:
        pass

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        for moved in movements(event):
            state.add(
                OUTSTANDING.name,
                {
                    "credit_type": moved.credit_type,
                    "available": moved.available_delta,
                    "held": moved.held_delta,
                },
            )
        day = _day(event)
        for credit_type, kind, credits in breakage(event):
            state.add(
                BREAKAGE.name,
                {"day": day, "credit_type": credit_type, "kind": kind, "credits": credits},
            )
        apply_split(state, event)
        accounts = state.rows(ANALYTICS_ACCOUNTS.name)
        if isinstance(event, Account.Opened):
            accounts.put(
                {
                    "account_id": event.originator_id,
                    "first_plan": event.plan,
                    "plan": event.plan,
                    "opened_at": event.timestamp,
                    "started_free": not self._paid_plan(event.plan),
                    "converted_at": None,
                    "conversion": None,
                    "refills": 0,
                    "first_refill_at": None,
                    "last_refill_at": None,
                }
            )
            return
        account = accounts.get(event.originator_id)
        assert account is not None, f"{event.originator_id}: event before Opened"
        if isinstance(event, Account.PlanChanged):
            account["plan"] = event.to_plan
            if self._paid_plan(event.to_plan):
                _convert(account, event, f"plan:{event.to_plan}")
            accounts.put(account)
        elif isinstance(event, Account.Granted) and event.paid:
            state.add(
                REVENUE.name,
                {
                    "source": event.source,
                    "pack": event.pack or "",
                    "currency": event.currency or "",
                    "purchases": 1,
                    "amount_cents": event.amount_paid_cents or 0,
                    "credits": event.amount,
                },
            )
            state.add(
                REVENUE_DAILY.name,
                {
                    "day": day,
                    "source": event.source,
                    "pack": event.pack or "",
                    "currency": event.currency or "",
                    "purchases": 1,
                    "amount_cents": event.amount_paid_cents or 0,
                    "credits": event.amount,
                },
            )
            state.add(REFILLS.name, {"day": day, "account_id": event.originator_id, "refills": 1})
            account["refills"] += 1
            account["first_refill_at"] = account["first_refill_at"] or event.timestamp
            account["last_refill_at"] = event.timestamp
            _convert(account, event, "purchase")
            accounts.put(account)

    def _paid_plan(self, plan: str) -> bool:
        spec = self.catalog.plans.get(plan)
        return spec is not None and spec.price_cents > 0


def _day(event: Account.Event) -> date:
    return event.timestamp.astimezone(UTC).date()


def _convert(account: Row, event: Account.Event, how: str) -> None:
    if account["started_free"] and account["converted_at"] is None:
        account["converted_at"] = event.timestamp
        account["conversion"] = how
