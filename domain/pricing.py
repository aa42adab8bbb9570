"""Prices, from the catalog alone: what a use costs, what a pack or an amount of money buys on a
plan, what a top-up charges, and whether a payment is the price.

Pure functions of the catalog and the plan: the account decides with them when a command or a
payment arrives, and checkout can quote with them before the customer pays. A refusal is a
`LedgerError` with a stable code (`unknown_action`, `not_eligible`, `invalid_command`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from domain.catalog import Catalog, PurchaseRate, TopUp
from domain.errors import ErrorCode, LedgerError
from domain.fields import MAX_AMOUNT


@dataclass(frozen=True, slots=True)
class Money:
    cents: int
    currency: str


class UsePrice(NamedTuple):
    """What a use costs: credits of one credit type, and the action's tags for usage reports."""

    credit_type: str
    amount: int
    tags: list[str]


@dataclass(frozen=True, slots=True)
class PackOffer:
    pack: str
    credit_type: str
    credits: int
    price: Money
    expires_after_days: int | None
    name: str


def use_price(
    catalog: Catalog,
    plan: str,
    *,
    action: str | None,
    credit_type: str | None,
    amount: int | None,
    quantity: int,
) -> UsePrice:
    """An action at the plan's cost (else the action's), or `amount` credits, times quantity."""
    if action is not None:
        spec = catalog.actions.get(action)
        if spec is None:
            raise LedgerError(ErrorCode.unknown_action, f"no action {action!r} in the catalog")
        credit_type = spec.credit_type
        unit_cost = catalog.cost_of(plan, action)
        tags = list(spec.tags)
    else:
        assert credit_type is not None and amount is not None
        catalog.require_credit_type(credit_type)
        unit_cost, tags = amount, []
    cost = unit_cost * quantity
    if cost > MAX_AMOUNT:
        raise LedgerError(ErrorCode.invalid_command, f"cost {cost} is above {MAX_AMOUNT}")
    return UsePrice(credit_type, cost, tags)


def pack_offer(catalog: Catalog, plan: str, pack_name: str) -> PackOffer:
    """The pack as the plan may buy it."""
    pack = catalog.packs.get(pack_name)
    if pack is None:
        raise LedgerError(ErrorCode.invalid_command, f"no pack {pack_name!r} in the catalog")
    if not catalog.may_buy_pack(plan, pack):
        raise LedgerError(ErrorCode.not_eligible, f"plan {plan!r} may not buy pack {pack_name!r}")
    return PackOffer(
        pack=pack_name,
        credit_type=pack.credit_type,
        credits=pack.amount,
        price=Money(pack.price_cents, catalog.pack_currency(pack)),
        expires_after_days=pack.expires_after_days,
        name=pack.name or f"{pack.amount} {pack.credit_type}",
    )


def purchase_rate(catalog: Catalog, plan: str, credit_type: str) -> PurchaseRate:
    """The plan's rate for buying an amount of money's worth of `credit_type`."""
    catalog.require_credit_type(credit_type)
    rate = catalog.plans[plan].purchase.get(credit_type)
    if rate is None or not catalog.may_buy(plan, credit_type):
        raise LedgerError(ErrorCode.not_eligible, f"plan {plan!r} may not buy {credit_type}")
    return rate


def credits_for(rate: PurchaseRate, amount_cents: int, *, field: str) -> int:
    """The credits `amount_cents` buys at `rate`, rounded down; `field` names the amount in a
    refusal (`amount_paid`, `amount_cents`)."""
    within(amount_cents, rate.min_cents, rate.max_cents, field)
    return amount_cents * rate.credits // rate.per_cents


def credits_paid(
    catalog: Catalog,
    plan: str,
    credit_type: str,
    amount_paid: int,
    currency: str,
    *,
    expected: int | None,
) -> int:
    """What a payment of `amount_paid` buys at the plan's rate, in the plan's currency;
    `expected`, if given, must be that many credits."""
    rate = purchase_rate(catalog, plan, credit_type)
    plan_currency = catalog.currency_of(plan)
    if currency != plan_currency:
        raise LedgerError(ErrorCode.invalid_command, f"currency is not {plan_currency}")
    credits = credits_for(rate, amount_paid, field="amount_paid")
    if expected is not None and expected != credits:
        raise LedgerError(
            ErrorCode.invalid_command,
            f"amount is not the {credits} credits {amount_paid} buys on plan {plan!r}",
        )
    return credits


def top_up_rule(catalog: Catalog, plan: str, credit_type: str) -> TopUp:
    rule = catalog.plans[plan].top_up.get(credit_type)
    if rule is None:
        raise LedgerError(ErrorCode.not_eligible, f"plan {plan!r} has no top-up for {credit_type}")
    return rule


def top_up_price(catalog: Catalog, plan: str, rule: TopUp, credits: int) -> Money:
    return Money(credits * rule.price_per_credit_cents, catalog.currency_of(plan))


def expect_payment(price: Money, amount_paid: int, currency: str) -> None:
    """A payment must be the price exactly, in its currency (discounts are other packs)."""
    if (amount_paid, currency) != (price.cents, price.currency):
        raise LedgerError(
            ErrorCode.invalid_command,
            f"amount_paid {amount_paid} {currency} is not the price {price.cents} {price.currency}",
        )


def within(value: int, minimum: int, maximum: int | None, field: str) -> None:
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
        raise LedgerError(ErrorCode.invalid_command, f"{field} {value} is outside {bounds}")
