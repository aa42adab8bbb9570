"""The domain rules of DESIGN §3, each through the service, asserting balances and events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.account import Account
from tests.kit.ledger import Ledger

CATALOG = """
version = "rules-1"
recovery_url = "https://example.test/buy"

[credit_types.credits]
unit = "credit"
low_balance_threshold = 5
buyers = ["pro"]
refund_policy = "forgive"

[credit_types.tokens]
unit = "token"
overdraft_floor = -10
refund_policy = "debt"
buyers = ["pro"]

[actions.call]
credit_type = "credits"
cost = 1
daily_limit = 4

[actions.big_call]
credit_type = "credits"
cost = 3

[actions.page]
credit_type = "tokens"
cost = 1

[plans.basic]
allocations.credits = { amount = 10, period = "day", renewal = "reset" }
resource_daily_limit = 3

[plans.pro]
allocations.credits = { amount = 10, period = "day", renewal = "reset" }
allocations.tokens = { amount = 20, period = "month", renewal = "reset" }
costs = { big_call = 2 }
daily_limits = { call = 100 }
purchase.credits = { credits = 100, per_cents = 500, min_cents = 500 }
purchase.tokens = { credits = 10, per_cents = 100, min_cents = 100 }

[plans.stack]
allocations.credits = { amount = 10, period = "month", renewal = "add" }

[plans.roll]
allocations.credits = { amount = 10, period = "month", renewal = "rollover", rollover_cap = 4 }

[packs.credits_50]
credit_type = "credits"
amount = 50
price_cents = 300
"""


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(CATALOG)


# ------------------------------------------------------------------ burn order


def test_burn_order_is_priority_then_earliest_expiry_then_oldest(ledger):
    ledger.ok("open_account", plan="pro")
    soon = (ledger.clock.now() + timedelta(hours=2)).isoformat()
    later = (ledger.clock.now() + timedelta(hours=5)).isoformat()
    admin_old = ledger.ok("grant", credit_type="credits", amount=2, source="admin")
    admin_new = ledger.ok("grant", credit_type="credits", amount=2, source="admin")
    later_lot = ledger.ok(
        "grant", credit_type="credits", amount=2, source="admin", expires_at=later
    )
    soon_lot = ledger.ok("grant", credit_type="credits", amount=2, source="admin", expires_at=soon)
    promo = ledger.ok("grant", credit_type="credits", amount=2, source="admin", priority=1)
    ledger.new_events()

    reply = ledger.ok("consume", credit_type="credits", amount=19)

    order = [r.result["lot_id"] for r in (promo, soon_lot, later_lot, admin_old, admin_new)]
    # Priority 1 first, then the allocation (10), then the admin lots by expiry, then age.
    assert [p["lot_id"] for p in reply.result["breakdown"]] == [order[0], "lot-1", *order[1:]]
    assert [p["amount"] for p in reply.result["breakdown"]] == [2, 10, 2, 2, 2, 1]
    consumed, low = ledger.new_events()
    assert consumed.breakdown == reply.result["breakdown"]
    assert (low.credit_type, low.available) == ("credits", 1)
    assert reply.balances["credits"].available == 1


def test_the_allocation_burns_before_purchased_credits(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok(
        "purchase", credit_type="credits", payment_reference="pi_1", amount_paid=500, currency="usd"
    )
    reply = ledger.ok("consume", credit_type="credits", amount=12)
    assert reply.result["breakdown"] == [
        {"lot_id": "lot-1", "amount": 10},
        {"lot_id": "lot-3", "amount": 2},
    ]
    assert reply.balances["credits"].allocation_remaining == 0
    assert reply.balances["credits"].purchased_remaining == 98


# ------------------------------------------------------------------ renewals


def test_a_consume_after_midnight_renews_the_day_first_and_resets_unused(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("consume", action="call", quantity=3)
    ledger.new_events()
    ledger.clock.set(datetime(2024, 2, 1, 0, 0, tzinfo=UTC))

    reply = ledger.ok("consume", action="call")

    renewed, consumed = ledger.new_events()
    assert isinstance(renewed, Account.Renewed) and isinstance(consumed, Account.Consumed)
    assert (renewed.period_id, renewed.forfeited, renewed.amount) == ("2024-02-01", 7, 10)
    assert consumed.breakdown == [{"lot_id": renewed.lot_id, "amount": 1}]
    assert reply.balances["credits"].available == 9
    assert reply.balances["credits"].next_reset_at == datetime(2024, 2, 2, tzinfo=UTC)


def test_renew_is_idempotent_per_period(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.clock.advance(days=1)
    first = ledger.ok("renew", period_id="2024-02-01")
    again = ledger.ok("renew", period_id="2024-02-01")
    assert first.result["renewed"] == ["credits"] and again.result["renewed"] == []
    assert ledger.names(ledger.events()).count("Renewed") == 1


def test_renewing_a_period_that_has_not_started_is_refused(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.rejected("renew", "invalid_command", period_id="2024-02-01")


def test_renewal_add_stacks_unused_allocation(ledger):
    ledger.ok("open_account", plan="stack")
    ledger.ok("consume", credit_type="credits", amount=4)
    ledger.clock.set(datetime(2024, 2, 29, 10, 0, tzinfo=UTC))  # anniversary of Jan 31
    reply = ledger.ok("expire")
    assert reply.balances["credits"].available == 6 + 10
    renewed = ledger.only(ledger.events(), Account.Renewed)
    assert [(r.renewal, r.amount, r.forfeited) for r in renewed] == [("add", 10, 0)]


def test_renewal_add_after_skipped_periods_adds_one_allocation_per_period(ledger):
    ledger.ok("open_account", plan="stack")
    ledger.clock.set(datetime(2024, 4, 30, 10, 0, tzinfo=UTC))  # three anniversaries later
    reply = ledger.ok("expire")
    (renewed,) = ledger.only(ledger.events(), Account.Renewed)
    assert (renewed.periods_elapsed, renewed.amount) == (3, 30)
    assert reply.balances["credits"].available == 40


def test_renewal_rollover_carries_unused_up_to_the_cap(ledger):
    ledger.ok("open_account", plan="roll")
    ledger.ok("consume", credit_type="credits", amount=3)
    ledger.clock.set(datetime(2024, 2, 29, 10, 0, tzinfo=UTC))
    reply = ledger.ok("expire")
    (renewed,) = ledger.only(ledger.events(), Account.Renewed)
    assert (renewed.forfeited, renewed.carried_over, renewed.amount) == (7, 4, 14)
    assert reply.balances["credits"].available == 14
    assert reply.balances["credits"].next_reset_at == datetime(2024, 3, 31, 10, tzinfo=UTC)


def test_a_monthly_allocation_opened_on_the_31st_renews_on_february_29(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.clock.set(datetime(2024, 2, 29, 9, 59, 59, tzinfo=UTC))
    assert ledger.ok("expire").balances["tokens"].next_reset_at == datetime(
        2024, 2, 29, 10, tzinfo=UTC
    )
    ledger.clock.set(datetime(2024, 2, 29, 10, 0, tzinfo=UTC))
    reply = ledger.ok("expire")
    tokens = [r for r in ledger.only(ledger.events(), Account.Renewed) if r.credit_type == "tokens"]
    assert [r.period_id for r in tokens] == ["2024-02-29"]
    assert reply.balances["tokens"].next_reset_at == datetime(2024, 3, 31, 10, tzinfo=UTC)


# ------------------------------------------------------------------ holds


def test_a_reserve_holds_credits_that_nothing_else_may_spend(ledger):
    ledger.ok("open_account", plan="basic")
    reply = ledger.ok("reserve", hold_id="h1", credit_type="credits", amount=8, ttl_seconds=60)
    assert (reply.balances["credits"].available, reply.balances["credits"].held) == (2, 8)
    ledger.rejected("consume", "insufficient_credits", credit_type="credits", amount=3)


def test_capturing_part_of_a_hold_spends_it_and_releases_the_rest(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("reserve", hold_id="h1", credit_type="credits", amount=8, ttl_seconds=60)
    ledger.new_events()
    reply = ledger.ok("capture", hold_id="h1", amount=5)
    (captured,) = ledger.new_events()
    assert isinstance(captured, Account.Captured)
    assert captured.breakdown == [{"lot_id": "lot-1", "amount": 5}]
    assert captured.released == [{"lot_id": "lot-1", "amount": 3}]
    assert (reply.balances["credits"].available, reply.balances["credits"].held) == (5, 0)
    ledger.rejected("capture", "hold_not_found", hold_id="h1")


def test_capturing_more_than_held_is_refused(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("reserve", hold_id="h1", credit_type="credits", amount=2, ttl_seconds=60)
    ledger.rejected("capture", "invalid_command", hold_id="h1", amount=3)


def test_releasing_a_hold_returns_its_credits(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("reserve", hold_id="h1", action="call", quantity=2, ttl_seconds=60)
    reply = ledger.ok("release", hold_id="h1")
    assert ledger.names(ledger.new_events())[-1] == "Released"
    assert (reply.balances["credits"].available, reply.balances["credits"].held) == (10, 0)


def test_a_hold_expires_at_its_ttl_and_its_credits_return(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("reserve", hold_id="h1", credit_type="credits", amount=6, ttl_seconds=60)
    ledger.new_events()
    ledger.clock.advance(seconds=60)
    reply = ledger.rejected("capture", "hold_expired", hold_id="h1")
    assert reply.balances["credits"].available == 10, "the reply shows the account as of now"
    reply = ledger.ok("consume", credit_type="credits", amount=10)
    assert ledger.names(ledger.new_events()) == ["HoldExpired", "Consumed", "LowBalance"]
    (expired,) = ledger.only(ledger.events(), Account.HoldExpired)
    assert expired.amount == 6 and expired.forfeited == 0
    assert reply.balances["credits"].available == 0


def test_a_held_allocation_reset_at_renewal_is_forfeited_when_released(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.clock.set(datetime(2024, 1, 31, 23, 59, tzinfo=UTC))
    ledger.ok("reserve", hold_id="h1", credit_type="credits", amount=4, ttl_seconds=3600)
    ledger.clock.set(datetime(2024, 2, 1, 0, 1, tzinfo=UTC))
    reply = ledger.ok("release", hold_id="h1")
    renewed, released = ledger.only(ledger.events(), Account.Renewed) + ledger.only(
        ledger.events(), Account.Released
    )
    assert renewed.forfeited == 6, "only the unheld part resets at midnight"
    assert released.forfeited == 4, "yesterday's held credits do not come back today"
    assert reply.balances["credits"].available == 10


# ------------------------------------------------------------------ low balance


def test_low_balance_fires_once_per_downward_crossing(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("consume", credit_type="credits", amount=4)  # 6 left: above 5
    ledger.ok("consume", credit_type="credits", amount=1)  # 5: crossing
    ledger.ok("consume", credit_type="credits", amount=1)  # 4: still below, no new event
    lows = ledger.only(ledger.events(), Account.LowBalance)
    assert [(e.available, e.threshold) for e in lows] == [(5, 5)]

    ledger.clock.advance(days=1)  # reset to 10: above again, re-armed
    ledger.ok("consume", credit_type="credits", amount=6)
    lows = ledger.only(ledger.events(), Account.LowBalance)
    assert [(e.available, e.threshold) for e in lows] == [(5, 5), (4, 5)]


# ------------------------------------------------------------------ refunds and overdraft


def test_a_refund_revokes_the_unspent_part_then_forgives_the_rest(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok(
        "purchase", pack="credits_50", payment_reference="pi_1", amount_paid=300, currency="usd"
    )
    ledger.ok("consume", credit_type="credits", amount=30)  # 10 allocation + 20 of the pack
    ledger.new_events()
    reply = ledger.ok("revoke", payment_reference="pi_1", reason="refund")
    revoked, low = ledger.new_events()
    assert (low.available, low.threshold) == (0, 5)
    assert (revoked.amount, revoked.unspent_revoked, revoked.forgiven, revoked.debt_added) == (
        50,
        30,
        20,
        0,
    )
    assert reply.balances["credits"].available == 0
    ledger.rejected("revoke", "invalid_command", payment_reference="pi_1", reason="refund")


def test_a_chargeback_under_the_debt_policy_is_repaid_from_the_next_grant(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok(
        "purchase", credit_type="tokens", payment_reference="pi_1", amount_paid=100, currency="usd"
    )  # 10 tokens
    ledger.ok("consume", credit_type="tokens", amount=25)  # 20 allocation + 5 purchased
    reply = ledger.ok("revoke", payment_reference="pi_1", reason="chargeback")
    assert reply.result == {
        "lot_id": "lot-3",
        "credit_type": "tokens",
        "revoked": 10,
        "unspent_revoked": 5,
        "policy": "debt",
        "spent": 5,
    }
    assert reply.balances["tokens"].available == -5
    ledger.rejected("consume", "insufficient_credits", credit_type="tokens", amount=6)

    reply = ledger.ok("grant", credit_type="tokens", amount=8, source="promotional")
    granted = ledger.only(ledger.events(), Account.Granted)[-1]
    assert (granted.repaid_debt, granted.amount) == (5, 8)
    assert reply.balances["tokens"].available == 3


def test_spending_may_overdraw_down_to_the_floor_and_no_further(ledger):
    ledger.ok("open_account", plan="pro")
    reply = ledger.ok("consume", credit_type="tokens", amount=30)  # 20 + 10 overdraft
    assert reply.result["overdraft"] == 10
    assert reply.balances["tokens"].available == -10
    ledger.rejected("consume", "insufficient_credits", credit_type="tokens", amount=1)
    ledger.rejected(
        "reserve",
        "insufficient_credits",
        hold_id="h",
        credit_type="tokens",
        amount=1,
        ttl_seconds=60,
    )
    ledger.clock.set(datetime(2024, 2, 29, 10, tzinfo=UTC))
    reply = ledger.ok("expire")
    (renewed,) = [
        e for e in ledger.only(ledger.events(), Account.Renewed) if e.credit_type == "tokens"
    ]
    assert renewed.repaid_overdraft == 10
    assert reply.balances["tokens"].available == 10


def test_credits_never_go_negative_without_an_overdraft_floor(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.rejected("consume", "insufficient_credits", credit_type="credits", amount=11)
    assert ledger.available("credits") == 10


# ------------------------------------------------------------------ limits


def test_the_daily_cap_of_an_action_counts_quantity_and_resets_at_midnight(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("consume", action="call", quantity=3)
    ledger.rejected("consume", "daily_limit_reached", action="call", quantity=2)
    ledger.ok("consume", action="call")
    ledger.rejected("consume", "daily_limit_reached", action="call")
    ledger.clock.set(datetime(2024, 2, 1, tzinfo=UTC))
    ledger.ok("consume", action="call", quantity=4)


def test_a_plan_may_raise_the_daily_cap_of_an_action(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok("consume", action="call", quantity=10)


def test_the_daily_cap_per_resource_counts_every_action_on_it(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("consume", action="call", resource="qr-1", quantity=2)
    ledger.ok("consume", action="big_call", resource="qr-1")
    reply = ledger.rejected("consume", "resource_limit_reached", action="call", resource="qr-1")
    assert "qr-1: 3 of 3" in reply.error.message
    ledger.ok("consume", action="call", resource="qr-2")


def test_costs_are_per_plan(ledger):
    ledger.ok("open_account", "basic-user", plan="basic")
    ledger.ok("open_account", "pro-user", plan="pro")
    assert ledger.ok("consume", "basic-user", action="big_call").result["amount"] == 3
    assert ledger.ok("consume", "pro-user", action="big_call").result["amount"] == 2


# ------------------------------------------------------------------ eligibility


def test_a_plan_that_is_not_a_buyer_may_not_purchase(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.rejected(
        "purchase",
        "not_eligible",
        pack="credits_50",
        payment_reference="pi_1",
        amount_paid=300,
        currency="usd",
    )


def test_a_pack_purchase_must_pay_the_pack_price(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.rejected(
        "purchase",
        "invalid_command",
        pack="credits_50",
        payment_reference="pi_1",
        amount_paid=299,
        currency="usd",
    )


def test_a_payment_reference_grants_once(ledger):
    ledger.ok("open_account", plan="pro")
    ledger.ok(
        "purchase", pack="credits_50", payment_reference="pi_1", amount_paid=300, currency="usd"
    )
    ledger.rejected(
        "purchase",
        "invalid_command",
        pack="credits_50",
        payment_reference="pi_1",
        amount_paid=300,
        currency="usd",
    )


def test_unknown_names_are_refused_with_their_codes(ledger):
    ledger.rejected("consume", "unknown_account", action="call")
    ledger.rejected("open_account", "unknown_plan", plan="gold")
    ledger.ok("open_account", plan="basic")
    ledger.rejected("open_account", "account_exists", plan="basic")
    ledger.rejected("consume", "unknown_action", action="teleport")
    ledger.rejected("change_plan", "unknown_plan", plan="gold")
    ledger.rejected("release", "hold_not_found", hold_id="nope")
