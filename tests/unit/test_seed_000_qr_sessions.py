"""Seed 000 (QR sessions): the monthly money budget first, then purchased credits; AI sessions
cost twice non-AI; Premium converts money at a better rate; the free tier may neither buy nor
use session credits; voice credits are separate and open to every plan; $5 minimum; a daily
limit per QR code."""

from __future__ import annotations

import pytest

from domain.account import Account
from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("seed_000_qr_sessions.toml")


def buy_sessions(ledger, amount_paid: int, reference: str = "pi_1", account: str = "acct"):
    return ledger.send(
        "purchase",
        account,
        credit_type="sessions",
        payment_reference=reference,
        amount_paid=amount_paid,
        currency="usd",
    )


@pytest.mark.parametrize(("plan", "units"), [("starter", 1600), ("premium", 14000)])
def test_the_monthly_budget_is_40_or_280_dollars_in_session_units(ledger, plan, units):
    reply = ledger.ok("open_account", plan=plan)
    assert reply.balances["sessions"].allocation_remaining == units
    assert reply.balances["voice"].available == 0


def test_an_ai_session_costs_twice_a_non_ai_session(ledger):
    ledger.ok("open_account", plan="starter")
    ai = ledger.ok("consume", action="ai_session")
    non_ai = ledger.ok("consume", action="non_ai_session")
    assert (ai.result["amount"], non_ai.result["amount"]) == (2, 1)
    consumed = ledger.only(ledger.events(), Account.Consumed)
    assert [e.tags for e in consumed] == [["ai"], ["non_ai"]], "usage breaks down AI vs non-AI"


@pytest.mark.parametrize(
    ("plan", "ai_sessions", "non_ai_sessions"), [("starter", 100, 200), ("premium", 125, 250)]
)
def test_five_dollars_buys_the_plans_number_of_sessions(ledger, plan, ai_sessions, non_ai_sessions):
    ledger.ok("open_account", plan=plan)
    reply = buy_sessions(ledger, 500)
    credits = reply.result["amount"]
    assert credits // 2 == ai_sessions and credits == non_ai_sessions
    assert reply.balances["sessions"].purchased_remaining == credits


def test_the_budget_is_used_first_then_credits_automatically(ledger):
    ledger.ok("open_account", plan="starter")
    buy_sessions(ledger, 500)  # 200 units
    ledger.ok("consume", action="ai_session", quantity=799)  # 1,598 of the 1,600 budget
    reply = ledger.ok("consume", action="ai_session", quantity=2)
    assert reply.result["breakdown"] == [
        {"lot_id": "lot-1", "amount": 2},
        {"lot_id": "lot-2", "amount": 2},
    ], "the session that empties the budget spills into credits without interruption"
    assert reply.balances["sessions"].allocation_remaining == 0
    assert reply.balances["sessions"].purchased_remaining == 198


def test_the_minimum_purchase_is_5_dollars(ledger):
    ledger.ok("open_account", plan="starter")
    ledger.rejected(
        "purchase",
        "invalid_command",
        credit_type="sessions",
        payment_reference="pi_1",
        amount_paid=499,
        currency="usd",
    )
    assert buy_sessions(ledger, 500, "pi_2").status == "accepted"


def test_the_free_tier_cannot_buy_session_credits(ledger):
    ledger.ok("open_account", plan="free")
    reply = ledger.rejected(
        "purchase",
        "not_eligible",
        credit_type="sessions",
        payment_reference="pi_1",
        amount_paid=500,
        currency="usd",
    )
    assert reply.balances["sessions"].purchased_remaining == 0


def test_credits_stay_after_cancelling_but_the_free_tier_cannot_use_them(ledger):
    ledger.ok("open_account", plan="starter")
    buy_sessions(ledger, 500)
    ledger.ok("change_plan", plan="free")
    ledger.ok("consume", action="non_ai_session", quantity=100)  # the free budget
    reply = ledger.rejected("consume", "insufficient_credits", action="non_ai_session")
    assert reply.balances["sessions"].purchased_remaining == 200, "kept, not usable"
    assert "may not spend purchased" in reply.error.message

    ledger.ok("change_plan", plan="starter")  # resubscribe: available again
    reply = ledger.ok("consume", action="non_ai_session", quantity=1700)
    assert reply.balances["sessions"].purchased_remaining == 0


def test_voice_credits_are_separate_and_every_plan_may_buy_them(ledger):
    for plan in ("free", "starter", "premium"):
        ledger.ok("open_account", plan, plan=plan)
        reply = ledger.ok(
            "purchase",
            plan,
            pack="voice_10",
            payment_reference=f"pi_{plan}",
            amount_paid=500,
            currency="usd",
        )
        assert reply.balances["voice"].available == 10
        call = ledger.ok("consume", plan, action="voice_call")
        assert call.result["credit_type"] == "voice"
        assert call.balances["voice"].available == 9
        assert call.balances["sessions"].available == reply.balances["sessions"].available


def test_a_daily_limit_per_qr_code(ledger):
    ledger.ok("open_account", plan="free")  # 50 sessions per QR code per day
    ledger.ok("consume", action="non_ai_session", resource="qr-lobby", quantity=30)
    ledger.ok("consume", action="ai_session", resource="qr-lobby", quantity=20)
    ledger.rejected(
        "consume", "resource_limit_reached", action="non_ai_session", resource="qr-lobby"
    )
    ledger.ok("consume", action="non_ai_session", resource="qr-menu")
    ledger.clock.advance(days=1)
    ledger.ok("consume", action="non_ai_session", resource="qr-lobby")
