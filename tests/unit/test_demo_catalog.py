"""The demo catalog: features the seeds do not exercise, end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.account import Account
from domain.integration import cloud_event_type, event_data
from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("demo.toml")


def test_a_trial_lot_expires_after_its_days(ledger):
    reply = ledger.ok("open_account", plan="free")
    assert reply.balances["credits"].available == 10 + 25
    ledger.clock.advance(days=14)
    reply = ledger.ok("expire")
    expired = ledger.only(ledger.events(), Account.LotExpired)
    assert [(e.lot_id, e.amount) for e in expired] == [("lot-3", 25)]
    assert reply.balances["credits"].available == 10


def test_catalog_priorities_override_the_default_burn_order(ledger):
    ledger.ok("open_account", plan="pro")
    promo = ledger.ok("grant", credit_type="credits", amount=5, source="promotional")
    reply = ledger.ok("consume", action="lookup", quantity=6)
    assert reply.result["breakdown"][0] == {"lot_id": promo.result["lot_id"], "amount": 5}


def test_a_scheduled_downgrade_applies_at_the_next_anniversary(ledger):
    ledger.ok("open_account", plan="pro")
    reply = ledger.ok("change_plan", plan="starter", effective="next_period")
    assert reply.result["effective_at"] == "2024-02-29T10:00:00+00:00"
    ledger.clock.set(datetime(2024, 2, 29, 10, tzinfo=UTC))
    reply = ledger.ok("expire")
    changed = ledger.only(ledger.events(), Account.PlanChanged)
    assert [(e.from_plan, e.to_plan, e.effective) for e in changed] == [
        ("pro", "starter", "next_period")
    ]
    assert reply.balances["credits"].allocation_remaining == 500


def test_the_event_data_is_json_safe_and_typed_for_cloud_events(ledger):
    import json

    ledger.ok("open_account", plan="starter")
    ledger.ok("reserve", hold_id="h1", action="generate", ttl_seconds=60)
    for event in ledger.events():
        assert cloud_event_type(event).startswith("credits.")
        json.dumps(event_data(event))
    assert cloud_event_type(ledger.events()[0]) == "credits.account_opened"
    reserved = ledger.events()[-1]
    assert (
        event_data(reserved)["expires_at"]
        == (ledger.clock.now() + timedelta(seconds=60)).isoformat()
    )


def test_snapshots_reload_the_same_account():
    ledger = Ledger("demo.toml", LEDGER_SNAPSHOT_INTERVAL="3", AGGREGATE_CACHE_MAXSIZE="0")
    ledger.ok("open_account", plan="starter")
    for _ in range(5):
        ledger.ok("consume", action="lookup")
    ledger.ok("reserve", hold_id="h1", action="generate", ttl_seconds=60)
    assert ledger.app.snapshots is not None
    assert list(ledger.app.snapshots.get("acct"))
    assert ledger.account() == ledger.fold()


def test_the_next_due_time_is_the_earliest_hold_lot_or_period_end(ledger):
    ledger.ok("open_account", plan="free")
    opened_at = ledger.clock.now()
    # Free: daily credits end at the next midnight UTC (before the 14-day trial expires).
    next_midnight = datetime(opened_at.year, opened_at.month, opened_at.day, tzinfo=UTC)
    assert ledger.account().next_due_at() == next_midnight + timedelta(days=1)

    ledger.ok("reserve", hold_id="h", action="lookup", ttl_seconds=60)

    assert ledger.account().next_due_at() == opened_at + timedelta(seconds=60)
    ledger.ok("release", hold_id="h")
    assert ledger.account().next_due_at() == next_midnight + timedelta(days=1)
