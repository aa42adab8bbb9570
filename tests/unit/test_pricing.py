"""Pricing from the catalog alone (domain/pricing.py): uses, packs, amounts, top-ups, payments."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import pricing
from domain.catalog import PurchaseRate, load_catalog
from domain.errors import ErrorCode, LedgerError
from domain.fields import MAX_AMOUNT

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml")


def refused(code: ErrorCode, call, *args, **kwargs) -> str:
    with pytest.raises(LedgerError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return caught.value.message


def test_an_action_costs_the_plans_price_times_quantity_and_carries_its_tags():
    price = pricing.use_price(
        CATALOG, "starter", action="generate", credit_type=None, amount=None, quantity=4
    )
    assert price == pricing.UsePrice("credits", 3 * 4, ["ai"])  # starter's cost, not the 2
    price = pricing.use_price(
        CATALOG, "pro", action="generate", credit_type=None, amount=None, quantity=4
    )
    assert price.amount == 2 * 4


def test_an_amount_costs_itself_times_quantity_and_has_no_tags():
    price = pricing.use_price(
        CATALOG, "free", action=None, credit_type="storage", amount=7, quantity=3
    )
    assert price == pricing.UsePrice("storage", 21, [])


def test_an_unknown_action_or_credit_type_or_a_cost_past_the_bound_is_refused():
    refused(
        ErrorCode.unknown_action,
        pricing.use_price,
        CATALOG,
        "pro",
        action="fly",
        credit_type=None,
        amount=None,
        quantity=1,
    )
    message = refused(
        ErrorCode.invalid_command,
        pricing.use_price,
        CATALOG,
        "pro",
        action=None,
        credit_type="gold",
        amount=1,
        quantity=1,
    )
    assert message == "no credit type 'gold' in the catalog"
    message = refused(
        ErrorCode.invalid_command,
        pricing.use_price,
        CATALOG,
        "pro",
        action=None,
        credit_type="credits",
        amount=MAX_AMOUNT,
        quantity=2,
    )
    assert message == f"cost {2 * MAX_AMOUNT} is above {MAX_AMOUNT}"


def test_a_pack_offer_says_what_the_plan_pays_and_gets():
    offer = pricing.pack_offer(CATALOG, "starter", "credits_1000")
    assert offer == pricing.PackOffer(
        pack="credits_1000",
        credit_type="credits",
        credits=1000,
        price=pricing.Money(4000, "usd"),
        expires_after_days=365,
        name="1,000 credits",
    )
    refused(ErrorCode.not_eligible, pricing.pack_offer, CATALOG, "free", "credits_1000")
    refused(ErrorCode.invalid_command, pricing.pack_offer, CATALOG, "pro", "credits_9")


def test_a_payment_must_be_the_price_in_its_currency():
    price = pricing.Money(4000, "usd")
    pricing.expect_payment(price, 4000, "usd")
    for paid, currency in ((3999, "usd"), (4001, "usd"), (4000, "eur")):
        message = refused(ErrorCode.invalid_command, pricing.expect_payment, price, paid, currency)
        assert message == f"amount_paid {paid} {currency} is not the price 4000 usd"


def test_an_amount_purchase_needs_a_rate_a_buyer_the_plans_currency_and_the_bounds():
    assert pricing.credits_paid(CATALOG, "pro", "credits", 1000, "usd", expected=None) == 250
    assert pricing.credits_paid(CATALOG, "pro", "credits", 1000, "usd", expected=250) == 250
    refused(
        ErrorCode.not_eligible,
        pricing.credits_paid,
        CATALOG,
        "free",
        "credits",
        1000,
        "usd",
        expected=None,
    )
    refused(
        ErrorCode.not_eligible,
        pricing.credits_paid,
        CATALOG,
        "pro",
        "messages",
        1000,
        "usd",
        expected=None,
    )
    message = refused(
        ErrorCode.invalid_command,
        pricing.credits_paid,
        CATALOG,
        "pro",
        "credits",
        1000,
        "eur",
        expected=None,
    )
    assert message == "currency is not usd"
    message = refused(
        ErrorCode.invalid_command,
        pricing.credits_paid,
        CATALOG,
        "starter",
        "credits",
        50001,
        "usd",
        expected=None,
    )
    assert message == "amount_paid 50001 is outside 500..50000"
    message = refused(
        ErrorCode.invalid_command,
        pricing.credits_paid,
        CATALOG,
        "pro",
        "credits",
        499,
        "usd",
        expected=None,
    )
    assert message == "amount_paid 499 is outside at least 500"
    message = refused(
        ErrorCode.invalid_command,
        pricing.credits_paid,
        CATALOG,
        "pro",
        "credits",
        1000,
        "usd",
        expected=251,
    )
    assert message == "amount is not the 250 credits 1000 buys on plan 'pro'"


@given(
    credits=st.integers(1, 10**6),
    per_cents=st.integers(1, 10**6),
    min_cents=st.integers(1, 10**6),
    paid=st.integers(1, 10**9),
)
def test_credits_for_money_round_down_and_never_give_more_than_paid_for(
    credits, per_cents, min_cents, paid
):
    rate = PurchaseRate(credits=credits, per_cents=per_cents, min_cents=min_cents)
    if paid < min_cents:
        refused(ErrorCode.invalid_command, pricing.credits_for, rate, paid, field="amount_cents")
        return
    bought = pricing.credits_for(rate, paid, field="amount_cents")
    # Integer arithmetic only: bought / credits ≤ paid / per_cents < (bought + 1) / credits.
    assert bought * per_cents <= paid * credits < (bought + 1) * per_cents
    assert pricing.credits_for(rate, paid + per_cents, field="amount_cents") == bought + credits


def test_a_top_up_is_priced_per_credit_in_the_plans_currency():
    rule = pricing.top_up_rule(CATALOG, "pro", "credits")
    assert pricing.top_up_price(CATALOG, "pro", rule, 250) == pricing.Money(1000, "usd")
    message = refused(ErrorCode.not_eligible, pricing.top_up_rule, CATALOG, "free", "credits")
    assert message == "plan 'free' has no top-up for credits"
