"""Seed 003 (AI proxy): packs and a free trial, 1 credit per generation, warning at <= 5,
no overspend, migration from the monthly tiers."""

from __future__ import annotations

import pytest

from domain.account import Account
from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("seed_003_ai_proxy.toml")


def buy(ledger, pack: str, price_cents: int, reference: str, account: str = "acct"):
    return ledger.ok(
        "purchase",
        account,
        pack=pack,
        payment_reference=reference,
        amount_paid=price_cents,
        currency="usd",
    )


def test_a_new_user_gets_the_free_trial_of_10_credits(ledger):
    reply = ledger.ok("open_account", plan="payg")
    assert reply.balances["credits"].available == 10
    (trial,) = ledger.only(ledger.events(), Account.Granted)
    assert (trial.source, trial.amount, trial.paid) == ("trial", 10, False)


@pytest.mark.parametrize(
    ("pack", "credits", "price_cents"),
    [("basic", 40, 999), ("premium", 100, 2499), ("pro", 250, 5999), ("enterprise", 1000, 19999)],
)
def test_each_pack_adds_its_credits_for_its_price(ledger, pack, credits, price_cents):
    ledger.ok("open_account", plan="payg")
    reply = buy(ledger, pack, price_cents, "pi_1")
    assert reply.result["amount"] == credits
    assert reply.balances["credits"].available == 10 + credits
    granted = ledger.only(ledger.events(), Account.Granted)[-1]
    assert (granted.pack, granted.amount_paid_cents, granted.currency) == (pack, price_cents, "usd")
    assert granted.expires_at is None, "credits don't expire"


def test_each_generation_costs_one_credit(ledger):
    ledger.ok("open_account", plan="payg")
    buy(ledger, "basic", 999, "pi_1")
    reply = ledger.ok("consume", action="generate_image")
    assert reply.result["amount"] == 1
    assert reply.balances["credits"].available == 49


def test_the_trial_burns_before_bought_credits(ledger):
    ledger.ok("open_account", plan="payg")
    buy(ledger, "basic", 999, "pi_1")
    reply = ledger.ok("consume", action="generate_text", quantity=12)
    assert reply.result["breakdown"] == [
        {"lot_id": "lot-1", "amount": 10},
        {"lot_id": "lot-2", "amount": 2},
    ]


def test_a_low_balance_warning_fires_once_at_5_or_fewer(ledger):
    ledger.ok("open_account", plan="payg")
    ledger.ok("consume", action="generate_image", quantity=4)  # 6
    ledger.new_events()
    ledger.ok("consume", action="generate_image")  # 5: warn
    _consumed, low = ledger.new_events()
    assert (low.credit_type, low.available, low.threshold) == ("credits", 5, 5)
    ledger.ok("consume", action="generate_image")  # 4: already warned
    assert ledger.names(ledger.new_events()) == ["Consumed"]


def test_users_cannot_overspend(ledger):
    ledger.ok("open_account", plan="payg")
    ledger.ok("consume", action="generate_image", quantity=10)
    reply = ledger.rejected("consume", "insufficient_credits", action="generate_image")
    assert reply.balances["credits"].available == 0
    ledger.rejected(
        "consume", "insufficient_credits", action="generate_text", quantity=11, account="acct"
    )


@pytest.mark.parametrize(
    ("tier", "credits"),
    [("free", 10), ("basic", 40), ("premium", 100), ("pro", 250), ("enterprise", 1000)],
)
def test_monthly_users_migrate_to_their_tier_credits_once(ledger, tier, credits):
    ledger.ok("open_account", plan="legacy")
    reply = ledger.ok("migrate", tier=tier)
    assert reply.balances["credits"].available == credits
    (granted,) = ledger.only(ledger.events(), Account.Granted)
    assert (granted.source, granted.migration_tier, granted.amount) == ("migration", tier, credits)
    ledger.rejected("migrate", "not_eligible", tier=tier)


def test_an_unknown_legacy_tier_is_refused(ledger):
    ledger.ok("open_account", plan="legacy")
    ledger.rejected("migrate", "invalid_command", tier="platinum")
