"""Seed 001 (Stripe credits): allocations per credit type, renewal reset vs add, on-demand
top-ups within min/max, auto top-up below a threshold at most N times a calendar month, and
the callbacks as events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.account import Account
from domain.integration import cloud_event_type, event_data
from services.relay.cloud_events import cloud_events
from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("seed_001_stripe_credits.toml")


def settle(ledger, top_up_id: str, amount: int, reference: str):
    return ledger.ok(
        "purchase",
        credit_type="api_calls",
        top_up_id=top_up_id,
        payment_reference=reference,
        amount_paid=amount,
        currency="usd",
    )


def test_subscribing_grants_each_credit_types_allocation(ledger):
    reply = ledger.ok("open_account", plan="pro")
    assert reply.balances["api_calls"].available == 1000
    assert reply.balances["ai_tokens"].available == 50000
    granted = ledger.only(ledger.events(), Account.AllocationGranted)
    assert {(e.credit_type, e.amount, e.renewal) for e in granted} == {
        ("api_calls", 1000, "add"),
        ("ai_tokens", 50000, "reset"),
    }


def test_on_renewal_add_stacks_while_reset_starts_over(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("consume", credit_type="api_calls", amount=400)
    ledger.ok("consume", credit_type="ai_tokens", amount=10000)
    ledger.clock.set(datetime(2024, 2, 29, 10, tzinfo=UTC))
    reply = ledger.ok("renew", period_id="2024-02-29")
    assert reply.balances["api_calls"].available == 600 + 1000
    assert reply.balances["ai_tokens"].available == 50000
    assert sorted(reply.result["renewed"]) == ["ai_tokens", "api_calls"]


def test_consume_reports_the_balance_when_insufficient(ledger):
    ledger.ok("open_account", plan="free")
    reply = ledger.rejected("consume", "insufficient_credits", credit_type="api_calls", amount=1)
    assert reply.balances["api_calls"].available == 0


def test_an_on_demand_top_up_is_requested_then_granted_when_paid(ledger):
    ledger.ok("open_account", plan="pro")
    reply = ledger.ok("request_top_up", credit_type="api_calls", amount=500)
    assert reply.result["price_cents"] == 500 and reply.result["currency"] == "usd"
    assert reply.balances["api_calls"].available == 1000, "nothing granted before payment"
    (requested,) = ledger.only(ledger.events(), Account.TopUpRequested)
    assert requested.idempotency_key == "acct:tu-1" and requested.trigger == "on_demand"

    reply = settle(ledger, "tu-1", 500, "pi_1")
    assert reply.balances["api_calls"].available == 1500
    granted, completed = ledger.events()[-2:]
    assert (granted.source, granted.top_up_id) == ("top_up", "tu-1")
    assert (completed.credits_added, completed.amount_charged_cents) == (500, 500)


@pytest.mark.parametrize("amount", [99, 10001])
def test_on_demand_top_ups_respect_min_and_max_per_purchase(ledger, amount):
    ledger.ok("open_account", plan="pro")
    ledger.rejected("request_top_up", "invalid_command", credit_type="api_calls", amount=amount)


def test_a_failed_top_up_is_recorded_with_a_recovery_url(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("request_top_up", credit_type="api_calls", amount=100)
    reply = ledger.ok("fail_top_up", top_up_id="tu-1", reason="card_declined")
    assert reply.result["recovery_url"] == "https://example.com/billing/credits"
    (failed,) = ledger.only(ledger.events(), Account.TopUpFailed)
    assert cloud_event_type(failed) == "credits.top_up_failed"
    assert event_data(failed)["recovery_url"] == "https://example.com/billing/credits"


def test_paying_through_the_recovery_url_settles_the_failed_top_up_once(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("request_top_up", credit_type="api_calls", amount=100)
    ledger.ok("fail_top_up", top_up_id="tu-1", reason="card_declined")
    before = ledger.available("api_calls")

    reply = ledger.ok(
        "purchase",
        credit_type="api_calls",
        top_up_id="tu-1",
        payment_reference="cs_recovery",
        amount_paid=100,
        currency="usd",
    )

    assert reply.balances["api_calls"].available == before + 100
    (completed,) = ledger.only(ledger.events(), Account.TopUpCompleted)
    assert (completed.top_up_id, completed.credits_added) == ("tu-1", 100)
    ledger.rejected(
        "purchase",
        "invalid_command",
        credit_type="api_calls",
        top_up_id="tu-1",
        payment_reference="pi_again",
        amount_paid=100,
        currency="usd",
    )


def test_auto_top_up_fires_below_the_threshold_at_most_5_times_a_calendar_month(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("consume", credit_type="api_calls", amount=900)  # 100 left: not below 100
    assert not ledger.only(ledger.events(), Account.TopUpRequested)
    for n in range(1, 7):
        ledger.ok("consume", credit_type="api_calls", amount=1)  # below 100
        requests = ledger.only(ledger.events(), Account.TopUpRequested)
        if n <= 5:
            assert requests[-1].trigger == "auto" and requests[-1].amount == 500
            settle(ledger, requests[-1].top_up_id, 500, f"pi_{n}")
            ledger.ok("consume", credit_type="api_calls", amount=500)  # below again
    assert len(ledger.only(ledger.events(), Account.TopUpRequested)) == 5

    ledger.clock.set(datetime(2024, 2, 1, tzinfo=UTC))  # a new calendar month
    ledger.ok("consume", credit_type="api_calls", amount=1)
    assert ledger.only(ledger.events(), Account.TopUpRequested)[-1].month == "2024-02"


def test_auto_top_up_waits_for_the_pending_one(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("consume", credit_type="api_calls", amount=950)
    ledger.ok("consume", credit_type="api_calls", amount=10)
    assert len(ledger.only(ledger.events(), Account.TopUpRequested)) == 1


def test_auto_top_up_can_be_configured_or_turned_off(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("configure_top_up", credit_type="api_calls", mode="off")
    ledger.ok("consume", credit_type="api_calls", amount=990)
    assert not ledger.only(ledger.events(), Account.TopUpRequested)
    ledger.rejected(
        "configure_top_up",
        "invalid_command",
        credit_type="api_calls",
        mode="auto",
        threshold=50,
        amount=50,
        max_per_month=2,
    )
    ledger.ok(
        "configure_top_up",
        credit_type="api_calls",
        mode="auto",
        threshold=50,
        amount=200,
        max_per_month=2,
    )
    ledger.ok("consume", credit_type="api_calls", amount=1)
    (requested,) = ledger.only(ledger.events(), Account.TopUpRequested)
    assert (requested.amount, requested.price_cents) == (200, 200)


def test_the_free_plan_has_no_top_ups(ledger):
    ledger.ok("open_account", plan="free")
    ledger.rejected("request_top_up", "not_eligible", credit_type="api_calls", amount=500)


def test_the_callbacks_are_events_the_relay_publishes(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("grant", credit_type="api_calls", amount=10, source="promotional")
    ledger.ok("consume", credit_type="api_calls", amount=1000)  # low balance, auto top-up
    settle(ledger, "tu-1", 500, "pi_1")
    ledger.ok("revoke", payment_reference="pi_1", reason="refund")
    types = [cloud_event_type(e) for e in ledger.events()]
    for callback in (
        "credits.granted",  # onCreditsGranted
        "credits.revoked",  # onCreditsRevoked
        "credits.low_balance",  # onCreditsLow
        "credits.top_up_completed",  # onTopUpCompleted
        "credits.top_up_requested",
    ):
        assert callback in types
    low = next(e for e in ledger.events() if cloud_event_type(e) == "credits.low_balance")
    assert event_data(low) == {
        "command_id": "cmd-3",
        "credit_type": "api_calls",
        "available": 10,
        "threshold": 100,
    }
    consumed = next(e for e in ledger.events() if cloud_event_type(e) == "credits.consumed")
    # The allocation (lot-2) burns before the promotional lot (lot-3).
    assert event_data(consumed)["breakdown"] == [{"lot_id": "lot-2", "amount": 1000}]
    assert event_data(consumed)["catalog_version"] == "stripe-credits-2024.1"


def test_on_credits_granted_hears_subscription_allocations_and_renewals(ledger):
    """`onCreditsGranted` listens to `credits.granted` alone: it hears the plan's grants too."""
    ledger.ok("open_account", plan="pro")
    ledger.clock.set(datetime(2024, 2, 29, 10, tzinfo=UTC))
    ledger.ok("renew", period_id="2024-02-29")
    heard = [
        (record["data"]["source"], record["data"]["credit_type"], record["data"]["amount"])
        for e in ledger.events()
        for record in cloud_events(e)
        if record["type"] == "credits.granted"
    ]
    assert heard == [
        ("allocation", "ai_tokens", 50000),
        ("allocation", "api_calls", 1000),
        ("renewal", "ai_tokens", 50000),
        ("renewal", "api_calls", 1000),
    ]
    # The facts stay as they are.
    types = [cloud_event_type(e) for e in ledger.events()]
    assert types.count("credits.allocation_granted") == types.count("credits.renewed") == 2
