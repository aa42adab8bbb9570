"""The account overview, computed from the read models' rows and the catalog (no I/O here).

Choices where the catalog is silent:
- A money-budget plan is one with a purchase rate for the credit type (seed 000): its credits
  are also shown in money at that rate, rounded down to the cent (1,600 units at 200 per $5 is
  $40.00).
- The consumption rate is the credits spent over the last `RATE_DAYS` UTC days (today
  included, fewer for a younger account) divided by those days, rounded down; the run-out day
  is the day the spendable credits reach zero at that rate. When the next reset comes before
  it, `reset_comes_first` says so and there is no run-out day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from domain.catalog import Catalog
from services.api.day_range import days_after
from services.api.overview_models import (
    AccountOverview,
    ActionInfo,
    AllocationInfo,
    AmountOffer,
    AutoTopUpInfo,
    BuyOptions,
    BuyRefusal,
    CreditTypeOverview,
    MoneyRate,
    PackOffer,
    PlanInfo,
    TopUpOffer,
)

RATE_DAYS = 7


def rate_window(opened_at: datetime, today: date) -> int:
    """Days the consumption rate averages over: `RATE_DAYS`, or the account's age in days."""
    age_days = (today - opened_at.astimezone(UTC).date()).days + 1
    return max(1, min(RATE_DAYS, age_days))


def account_overview(
    catalog: Catalog,
    account: dict[str, Any],
    balance_rows: list[dict[str, Any]],
    spent: dict[str, int],
    today: date,
) -> AccountOverview:
    """`spent`: credits spent per credit type over the last `rate_window` days."""
    plan_id = account["plan"]
    spec = catalog.plans.get(plan_id)
    currency = catalog.currency_of(plan_id) if spec is not None else catalog.currency
    rows = {row["credit_type"]: row for row in balance_rows}
    days = rate_window(account["opened_at"], today)
    credit_types = [
        _credit_type(catalog, plan_id, name, rows.get(name), spent.get(name, 0), days, today)
        for name in sorted(set(catalog.credit_types) | set(rows))
    ]
    resets = [c.next_reset_at for c in credit_types if c.next_reset_at is not None]
    return AccountOverview(
        account_id=account["account_id"],
        catalog=catalog.name or catalog.version,
        plan=PlanInfo(
            plan=plan_id,
            name=(spec.name if spec is not None else "") or plan_id,
            price_cents=spec.price_cents if spec is not None else 0,
            currency=currency,
        ),
        scheduled_plan=account["scheduled_plan"],
        scheduled_at=account["scheduled_at"],
        next_reset_at=min(resets, default=None),
        credit_types=credit_types,
        actions=[
            ActionInfo(
                action=name,
                credit_type=action.credit_type,
                cost=catalog.cost_of(plan_id, name) if spec is not None else action.cost,
                tags=list(action.tags),
            )
            for name, action in sorted(catalog.actions.items())
        ],
        buy=buy_options(catalog, plan_id),
        position=account["position"],
    )


def _credit_type(
    catalog: Catalog,
    plan_id: str,
    name: str,
    row: dict[str, Any] | None,
    spent: int,
    days: int,
    today: date,
) -> CreditTypeOverview:
    spec = catalog.credit_types.get(name)
    plan = catalog.plans.get(plan_id)
    parts = {
        key: (row[key] if row is not None else 0)
        for key in (
            "available",
            "held",
            "allocation_remaining",
            "purchased_remaining",
            "overdraft",
            "debt",
        )
    }
    other = (
        parts["available"]
        + parts["overdraft"]
        + parts["debt"]
        - parts["allocation_remaining"]
        - parts["purchased_remaining"]
    )
    locked = 0
    floor = 0
    if spec is not None:
        floor = spec.overdraft_floor
        if plan is not None and not catalog.may_spend_purchased(plan_id, name):
            locked = parts["purchased_remaining"]
    spendable_with_overdraft = max(parts["available"] - locked - floor, 0)
    allocation = plan.allocations.get(name) if plan is not None else None
    rate = plan.purchase.get(name) if plan is not None else None
    threshold = spec.low_balance_threshold if spec is not None else None
    next_reset_at = row["next_reset_at"] if row is not None else None
    rate_per_day = spent // days
    runs_out_on, reset_first = _run_out(
        spendable_with_overdraft, rate_per_day, today, next_reset_at
    )
    return CreditTypeOverview(
        credit_type=name,
        unit=spec.unit if spec is not None else name,
        description=spec.description if spec is not None else "",
        available=parts["available"],
        allocation_remaining=parts["allocation_remaining"],
        purchased_remaining=parts["purchased_remaining"],
        other_remaining=other,
        held=parts["held"],
        overdraft=parts["overdraft"],
        debt=parts["debt"],
        spendable_with_overdraft=spendable_with_overdraft,
        allocation=(
            AllocationInfo(
                amount=allocation.amount, period=allocation.period, renewal=allocation.renewal
            )
            if allocation is not None
            else None
        ),
        next_reset_at=next_reset_at,
        money=(
            MoneyRate(
                currency=catalog.currency_of(plan_id),
                credits=rate.credits,
                per_cents=rate.per_cents,
            )
            if rate is not None
            else None
        ),
        low_balance_threshold=threshold,
        low_balance=threshold is not None and parts["available"] <= threshold,
        rate_days=days,
        spent_in_rate_days=spent,
        rate_per_day=rate_per_day,
        runs_out_on=runs_out_on,
        reset_comes_first=reset_first,
    )


def _run_out(
    spendable: int, rate_per_day: int, today: date, next_reset_at: datetime | None
) -> tuple[date | None, bool]:
    if rate_per_day <= 0:
        return None, False
    # Today's spending is already in `spendable`: it lasts this many more whole days.
    day = days_after(today, spendable // rate_per_day)
    if day is None:  # lasts past the calendar's end
        return None, False
    if next_reset_at is not None and next_reset_at.astimezone(UTC).date() <= day:
        return None, True
    return day, False


def buy_options(catalog: Catalog, plan_id: str) -> BuyOptions:
    plan = catalog.plans.get(plan_id)
    if plan is None:
        return BuyOptions(packs=[], amounts=[], top_ups=[], refused=[])
    currency = catalog.currency_of(plan_id)
    packs = [
        PackOffer(
            pack=name,
            name=pack.name or name,
            credit_type=pack.credit_type,
            amount=pack.amount,
            price_cents=pack.price_cents,
            currency=catalog.pack_currency(pack),
        )
        for name, pack in sorted(catalog.packs.items(), key=lambda p: (p[1].price_cents, p[0]))
        if pack.price_cents > 0 and catalog.may_buy_pack(plan_id, pack)
    ]
    amounts = [
        AmountOffer(
            credit_type=name,
            credits=rate.credits,
            per_cents=rate.per_cents,
            min_cents=rate.min_cents,
            max_cents=rate.max_cents,
            currency=currency,
        )
        for name, rate in sorted(plan.purchase.items())
        if catalog.may_buy(plan_id, name)
    ]
    top_ups = [
        TopUpOffer(
            credit_type=name,
            price_per_credit_cents=top_up.price_per_credit_cents,
            min_credits=top_up.min_credits,
            max_credits=top_up.max_credits,
            max_per_month_limit=top_up.max_per_month_limit,
            currency=currency,
            auto=(
                AutoTopUpInfo(
                    threshold=top_up.auto.threshold,
                    amount=top_up.auto.amount,
                    max_per_month=top_up.auto.max_per_month,
                )
                if top_up.auto is not None
                else None
            ),
        )
        for name, top_up in sorted(plan.top_up.items())
        if catalog.may_buy(plan_id, name)
    ]
    offered = (
        {p.credit_type for p in packs}
        | {a.credit_type for a in amounts}
        | {t.credit_type for t in top_ups}
    )
    refused = [
        _refusal(catalog, plan_id, name)
        for name in sorted(catalog.credit_types)
        if name not in offered
    ]
    return BuyOptions(packs=packs, amounts=amounts, top_ups=top_ups, refused=refused)


def _refusal(catalog: Catalog, plan_id: str, credit_type: str) -> BuyRefusal:
    """Why `plan_id` cannot buy `credit_type`, and the plans that could (by name)."""
    spec = catalog.credit_types[credit_type]
    buyers = set(spec.buyers)
    for pack in catalog.packs.values():
        if pack.credit_type == credit_type and pack.plans is not None:
            buyers |= set(pack.plans)
    buyers.discard(plan_id)
    if buyers:
        names = [_plan_name(catalog, p) for p in sorted(buyers)]
        return BuyRefusal(
            credit_type=credit_type,
            reason=f"Only {_joined(names)} may buy {credit_type}: upgrade to buy more.",
            plans_that_may=names,
        )
    # Nobody may buy it: a plan with a larger allocation is the only way to more (seed 004).
    own = catalog.plans[plan_id].allocations.get(credit_type)
    own_amount = own.amount if own is not None else 0
    larger = [
        _plan_name(catalog, name)
        for name, plan in catalog.plans.items()
        if (a := plan.allocations.get(credit_type)) is not None and a.amount > own_amount
    ]
    reason = f"{credit_type} cannot be bought"
    reason += f": upgrade your tier ({_joined(larger)}) for more." if larger else "."
    return BuyRefusal(credit_type=credit_type, reason=reason, plans_that_may=larger)


def _plan_name(catalog: Catalog, plan_id: str) -> str:
    return catalog.plans[plan_id].name or plan_id


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
