"""Seed 000 "Set daily limits on QR codes": a customer limits one QR code below the plan's
cap; consumes and reserves naming it are held to the lower of the two; refusals name the QR
code and the limit that applied; a downgrade lowers what applies, an upgrade restores the
customer's own limit; clearing it brings back the plan's cap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.account import Account
from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger("seed_000_qr_sessions.toml")
    ledger.ok("open_account", plan="starter")  # 500 sessions per QR code a day
    return ledger


def scan(ledger: Ledger, qr: str, quantity: int = 1):
    return ledger.send("consume", action="non_ai_session", resource=qr, quantity=quantity)


def test_a_qr_code_with_its_own_limit_stops_at_it_and_the_refusal_names_it(ledger):
    reply = ledger.ok("set_resource_limit", resource="qr-lobby", daily_limit=3)
    assert reply.result == {
        "resource": "qr-lobby",
        "daily_limit": 3,
        "plan_limit": 500,
        "effective_limit": 3,
        "changed": True,
    }
    (event,) = ledger.only(ledger.events(), Account.ResourceLimitSet)
    assert (event.resource, event.daily_limit, event.plan_limit) == ("qr-lobby", 3, 500)

    assert scan(ledger, "qr-lobby", 2).status == "accepted"
    ledger.ok("reserve", hold_id="h1", action="ai_session", resource="qr-lobby", ttl_seconds=60)
    refused = ledger.rejected(
        "consume", "resource_limit_reached", action="non_ai_session", resource="qr-lobby"
    )
    assert refused.error.message == (
        "qr-lobby: 3 of 3 used today (UTC), the account's own limit for it"
    )
    assert scan(ledger, "qr-door", 10).status == "accepted", "other QR codes keep the plan's cap"

    ledger.clock.advance(days=1)
    assert scan(ledger, "qr-lobby", 3).status == "accepted", "a new UTC day starts over"


def test_a_limit_above_the_plans_cap_is_refused_naming_both(ledger):
    refused = ledger.rejected(
        "set_resource_limit", "limit_above_plan", resource="qr-1", daily_limit=501
    )
    assert (
        refused.error.message
        == "qr-1: daily_limit 501 is above the 500 a day plan 'starter' allows"
    )
    assert ledger.account().resource_limits == {}
    ledger.ok("set_resource_limit", resource="qr-1", daily_limit=500)


def test_clearing_brings_back_the_plans_cap(ledger):
    ledger.ok("set_resource_limit", resource="qr-1", daily_limit=1)
    cleared = ledger.ok("set_resource_limit", resource="qr-1", daily_limit=None)
    assert cleared.result["effective_limit"] == 500 and cleared.result["changed"] is True
    assert ledger.account().resource_limits == {}
    assert scan(ledger, "qr-1", 500).status == "accepted"
    refused = ledger.rejected(
        "consume", "resource_limit_reached", action="non_ai_session", resource="qr-1"
    )
    assert refused.error.message == "qr-1: 500 of 500 used today (UTC)", "the plan's, as before"

    again = ledger.ok("set_resource_limit", resource="qr-1", daily_limit=None)
    assert again.result["changed"] is False
    assert len(ledger.only(ledger.events(), Account.ResourceLimitSet)) == 2, "no event for nothing"


def test_a_limit_of_zero_stops_a_qr_code(ledger):
    ledger.ok("set_resource_limit", resource="qr-lost", daily_limit=0)
    ledger.rejected("consume", "resource_limit_reached", action="ai_session", resource="qr-lost")


def test_a_downgrade_lowers_what_applies_and_an_upgrade_restores_the_own_limit(ledger):
    ledger.ok("set_resource_limit", resource="qr-1", daily_limit=400)
    ledger.ok("change_plan", plan="free")  # cap 50
    assert ledger.account().resource_limits == {"qr-1": 400}, "the customer's setting is kept"
    assert scan(ledger, "qr-1", 50).status == "accepted"
    refused = ledger.rejected(
        "consume", "resource_limit_reached", action="non_ai_session", resource="qr-1"
    )
    assert refused.error.message == "qr-1: 50 of 50 used today (UTC)", "the plan's cap applied"
    ledger.ok("change_plan", plan="starter")
    assert scan(ledger, "qr-1", 350).status == "accepted"
    refused = ledger.rejected(
        "consume", "resource_limit_reached", action="non_ai_session", resource="qr-1"
    )
    assert "400 of 400" in refused.error.message and "own limit" in refused.error.message


def test_a_plan_without_a_cap_takes_any_limit():
    ledger = Ledger(
        """
version = "no-cap"
[credit_types.credits]
unit = "credit"
[actions.scan]
credit_type = "credits"
cost = 1
[plans.open]
allocations.credits = { amount = 1000, period = "month" }
"""
    )
    ledger.ok("open_account", plan="open")
    reply = ledger.ok("set_resource_limit", resource="qr-1", daily_limit=2)
    assert (reply.result["plan_limit"], reply.result["effective_limit"]) == (None, 2)
    ledger.ok("consume", action="scan", resource="qr-1", quantity=2)
    ledger.rejected("consume", "resource_limit_reached", action="scan", resource="qr-1")
    assert ledger.ok("consume", action="scan", resource="qr-2", quantity=900).status == "accepted"


def test_the_same_command_id_sets_once(ledger):
    first = ledger.send("set_resource_limit", command_id="lim-1", resource="qr-1", daily_limit=5)
    again = ledger.send("set_resource_limit", command_id="lim-1", resource="qr-1", daily_limit=5)
    assert (first.status, again.status) == ("accepted", "duplicate")
    assert again.result == first.result
    assert len(ledger.only(ledger.events(), Account.ResourceLimitSet)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"resource": "qr-1"},
        {"resource": "qr-1", "daily_limit": -1},
        {"daily_limit": 3},
        {"resource": "qr 1", "daily_limit": 3},
        {"resource": "qr-1", "daily_limit": 2.5},
    ],
)
def test_a_malformed_command_is_refused_as_invalid(ledger, fields):
    ledger.rejected("set_resource_limit", "invalid_command", **fields)


def test_limits_survive_a_snapshot_and_a_fold():
    ledger = Ledger("seed_000_qr_sessions.toml", LEDGER_SNAPSHOT_INTERVAL="2")
    ledger.ok("open_account", plan="premium")
    for n in range(5):
        ledger.ok("set_resource_limit", resource=f"qr-{n}", daily_limit=10 + n)
    ledger.ok("set_resource_limit", resource="qr-0", daily_limit=None)
    assert ledger.account().resource_limits == {f"qr-{n}": 10 + n for n in range(1, 5)}
    assert ledger.fold().resource_limits == ledger.account().resource_limits


@settings(max_examples=60, deadline=None, database=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(("scan", "reserve", "limit", "clear", "plan", "hours")),
            st.integers(0, 3),
            st.integers(0, 120),
        ),
        max_size=40,
    )
)
def test_a_resource_never_passes_its_effective_limit(steps):
    """Property: whatever the limits, plan changes and time, units counted per QR code and
    UTC day never pass the limit that applied when each use was accepted."""
    ledger = Ledger("seed_000_qr_sessions.toml")
    ledger.ok("open_account", plan="premium")
    for index, (step, qr_n, n) in enumerate(steps):
        qr = f"qr-{qr_n}"
        if step == "scan":
            reply = ledger.send("consume", action="non_ai_session", resource=qr, quantity=1 + n)
        elif step == "reserve":
            reply = ledger.send(
                "reserve",
                hold_id=f"h{index}",
                action="ai_session",
                resource=qr,
                quantity=1 + n % 10,
                ttl_seconds=60,
            )
        elif step == "limit":
            reply = ledger.send("set_resource_limit", resource=qr, daily_limit=n)
        elif step == "clear":
            reply = ledger.send("set_resource_limit", resource=qr, daily_limit=None)
        elif step == "plan":
            reply = ledger.send("change_plan", plan=("free", "starter", "premium")[n % 3])
        else:
            ledger.clock.advance(hours=1 + n % 30)
            continue
        if reply.error is not None:
            assert reply.error.code in (
                "resource_limit_reached",
                "insufficient_credits",
                "limit_above_plan",
            ), reply.error
            if reply.error.code == "resource_limit_reached":
                assert reply.error.message.startswith(f"{qr}: ")
        account = ledger.account()
        plan_limit = ledger.catalog.plans[account.plan].resource_daily_limit
        for resource, used in account.usage.by_resource.items():
            own = account.resource_limits.get(resource)
            if step in ("scan", "reserve") and resource == qr and reply.status == "accepted":
                assert plan_limit is not None, "every seed 000 plan has a cap"
                limit = plan_limit if own is None else min(own, plan_limit)
                assert used <= limit, (resource, used, own, plan_limit)
