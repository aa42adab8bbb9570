"""Seed 004 (DocWeb): daily credits per tier, reset at midnight UTC, no rollover, free cache."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.account import Account
from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("seed_004_docweb.toml")


@pytest.mark.parametrize(("tier", "per_day"), [("free", 3), ("pro", 10), ("max", 100)])
def test_each_tier_gets_its_daily_credits(ledger, tier, per_day):
    reply = ledger.ok("open_account", plan=tier)
    assert reply.balances["credits"].available == per_day
    assert reply.balances["credits"].next_reset_at == datetime(2024, 2, 1, tzinfo=UTC)
    (granted,) = ledger.only(ledger.events(), Account.AllocationGranted)
    assert (granted.amount, granted.period, granted.renewal) == (per_day, "day", "reset")


def test_discovery_and_chat_cost_one_credit_and_stop_when_out(ledger):
    ledger.ok("open_account", plan="free")
    ledger.ok("consume", action="discovery")
    ledger.ok("consume", action="chat_message")
    reply = ledger.ok("consume", action="chat_message")
    assert reply.balances["credits"].available == 0
    ledger.rejected("consume", "insufficient_credits", action="discovery")
    ledger.rejected("consume", "insufficient_credits", action="chat_message")
    assert [e.amount for e in ledger.only(ledger.events(), Account.Consumed)] == [1, 1, 1]


def test_credits_reset_at_midnight_utc_without_rollover(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("consume", action="chat_message", quantity=4)  # 6 unused today
    ledger.clock.set(datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC))
    assert ledger.ok("expire").balances["credits"].available == 6

    ledger.clock.set(datetime(2024, 2, 1, 0, 0, tzinfo=UTC))
    reply = ledger.ok("consume", action="discovery")

    (renewed,) = ledger.only(ledger.events(), Account.Renewed)
    assert (renewed.period_id, renewed.forfeited, renewed.carried_over) == ("2024-02-01", 6, 0)
    assert renewed.amount == 10, "use them or lose them: no rollover"
    assert reply.balances["credits"].available == 9
    assert reply.balances["credits"].next_reset_at == datetime(2024, 2, 2, tzinfo=UTC)


def test_cached_discoveries_and_scraping_are_free_but_counted_as_usage(ledger):
    ledger.ok("open_account", plan="free")
    ledger.ok("consume", action="discovery", quantity=3)
    ledger.ok("consume", action="discovery_cached")
    reply = ledger.ok("consume", action="scrape", quantity=5)
    assert reply.balances["credits"].available == 0
    free = [e for e in ledger.only(ledger.events(), Account.Consumed) if e.amount == 0]
    assert [(e.action, e.quantity, e.tags, e.breakdown) for e in free] == [
        ("discovery_cached", 1, ["discovery", "cached"], []),
        ("scrape", 5, ["scrape"], []),
    ]


def test_credits_cannot_be_bought(ledger):
    ledger.ok("open_account", plan="max")
    ledger.rejected(
        "purchase",
        "not_eligible",
        credit_type="credits",
        payment_reference="pi_1",
        amount_paid=500,
        currency="usd",
    )


def test_upgrading_adds_the_difference_for_today(ledger):
    ledger.ok("open_account", plan="free")
    ledger.ok("consume", action="chat_message", quantity=3)
    reply = ledger.ok("change_plan", plan="pro")
    assert reply.balances["credits"].available == 7, "Free → Pro: +7 credits/day"
    ledger.ok("change_plan", plan="max")
    assert ledger.available("credits") == 97, "Free → Max: +97 credits/day"
    assert ledger.names(ledger.events())[-2:] == ["PlanChanged", "AllocationGranted"]
