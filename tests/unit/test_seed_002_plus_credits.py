"""Seed 002 (PLUS): a PLUS-only 200-credit pack at $5.99; the monthly allowance burns before
the bonus credits; bonus credits never reset."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.account import Account
from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("seed_002_plus_credits.toml")


def buy_pack(ledger, account: str = "acct", reference: str = "cs_1"):
    return ledger.send(
        "purchase",
        account,
        pack="credits_200",
        payment_reference=reference,
        amount_paid=599,
        currency="usd",
    )


def test_plus_subscribers_buy_200_bonus_credits_for_599_cents(ledger):
    ledger.ok("open_account", plan="plus")
    reply = buy_pack(ledger)
    assert reply.status == "accepted"
    assert reply.balances["credits"].available == 300 + 200
    assert reply.balances["credits"].purchased_remaining == 200
    granted = ledger.only(ledger.events(), Account.Granted)[-1]
    assert (granted.amount, granted.amount_paid_cents, granted.paid) == (200, 599, True)


def test_only_plus_subscribers_may_buy_the_pack(ledger):
    ledger.ok("open_account", plan="free")
    reply = ledger.rejected(
        "purchase",
        "not_eligible",
        pack="credits_200",
        payment_reference="cs_1",
        amount_paid=599,
        currency="usd",
    )
    assert reply.balances["credits"].available == 20


def test_the_monthly_allowance_burns_before_bonus_credits(ledger):
    ledger.ok("open_account", plan="plus")
    buy_pack(ledger)
    reply = ledger.ok("consume", action="generation", quantity=310)
    assert reply.result["breakdown"] == [
        {"lot_id": "lot-1", "amount": 300},
        {"lot_id": "lot-2", "amount": 10},
    ]
    assert reply.balances["credits"].allocation_remaining == 0
    assert reply.balances["credits"].purchased_remaining == 190


def test_bonus_credits_never_reset_while_the_allowance_does(ledger):
    ledger.ok("open_account", plan="plus")
    buy_pack(ledger)
    ledger.ok("consume", action="generation", quantity=100)
    ledger.clock.set(datetime(2024, 4, 30, 10, tzinfo=UTC))  # three monthly renewals later
    reply = ledger.ok("expire")
    assert reply.balances["credits"].purchased_remaining == 200
    assert reply.balances["credits"].allocation_remaining == 300
    (renewed,) = ledger.only(ledger.events(), Account.Renewed)
    assert (renewed.forfeited, renewed.amount, renewed.periods_elapsed) == (200, 300, 3)
