"""The projections are pure: events in, row changes out, checked against the aggregate.

A scripted demo-catalog account goes through every kind of movement (allocations, a trial,
consumes, a hold captured in part, a hold released, a purchase, a refund with debt, a renewal,
a plan change); after each command the projected rows equal the aggregate's state.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.catalog import load_catalog
from projections.batch import BatchState
from projections.folds import (
    expected_balances,
    expected_holds,
    expected_lots,
    projected_balances,
    projected_holds,
    projected_lots,
    spent_fold,
    usage_fold,
)
from projections.registry import build_projections
from tests.kit.ledger import Ledger

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "domain/catalogs/demo.toml")


class Scenario:
    """The in-memory ledger of one account, `acct`, and every projection's state fed with each
    new event (its position in the log: its version, the account being alone there)."""

    def __init__(self) -> None:
        self.ledger = Ledger(CATALOG)
        self.clock = self.ledger.clock
        self.projections = build_projections(CATALOG)
        self.states = {n: BatchState(p.tables) for n, p in self.projections.items()}

    def ok(self, type: str, **fields: Any) -> None:
        self.ledger.ok(type, **fields)
        for event in self.ledger.new_events():
            for name, projection in self.projections.items():
                projection.apply(self.states[name], event, event.originator_version)
        for name, projection in self.projections.items():
            projection.finish(self.states[name])

    def rows(self, projection: str, table: str) -> list[dict[str, Any]]:
        return list(self.states[projection].rows(table).of("acct"))

    def check(self) -> None:
        account = self.ledger.account()
        assert projected_balances(self.rows("balances", "rm_balances"), CATALOG) == (
            expected_balances(account, CATALOG)
        )
        assert projected_lots(self.rows("balances", "rm_lots")) == expected_lots(account)
        assert projected_holds(self.rows("balances", "rm_holds")) == expected_holds(account)
        heads = {
            r["credit_type"]: r["available"]
            for r in self.rows("transactions", "rm_transaction_heads")
        }
        for credit_type, balance in account.balances(CATALOG).items():
            assert heads.get(credit_type, 0) == balance["available"], credit_type


@pytest.fixture
def scenario() -> Scenario:
    scenario = Scenario()
    scenario.ok("open_account", plan="starter")
    return scenario


def test_every_movement_keeps_the_read_models_equal_to_the_aggregate(scenario):
    steps: list[tuple[str, dict[str, Any]]] = [
        ("consume", {"action": "generate", "quantity": 2}),
        ("reserve", {"hold_id": "h1", "action": "lookup", "quantity": 5, "ttl_seconds": 60}),
        ("capture", {"hold_id": "h1", "amount": 3}),
        ("reserve", {"hold_id": "h2", "credit_type": "messages", "amount": 4, "ttl_seconds": 60}),
        ("release", {"hold_id": "h2"}),
        (
            "purchase",
            {
                "pack": "credits_1000",
                "payment_reference": "pi_1",
                "amount_paid": 4000,
                "currency": "usd",
            },
        ),
        ("consume", {"credit_type": "credits", "amount": 700}),
        ("revoke", {"payment_reference": "pi_1", "reason": "refund"}),
        ("grant", {"credit_type": "credits", "amount": 30, "source": "promotional"}),
        ("change_plan", {"plan": "pro", "effective": "now"}),
    ]
    for type, fields in steps:
        scenario.ok(type, **fields)
        scenario.check()
    scenario.clock.advance(days=40)  # renewals, expiry
    scenario.ok("expire")
    scenario.check()


def test_transactions_chain_available_before_and_after(scenario):
    scenario.ok("consume", action="lookup", quantity=3)
    scenario.ok("reserve", hold_id="h", action="generate", ttl_seconds=60)
    scenario.ok("capture", hold_id="h")
    rows = scenario.states["transactions"].appended["rm_transactions"]
    by_type: dict[str, int] = {}
    for row in rows:
        assert row["available_before"] == by_type.get(row["credit_type"], 0)
        assert row["available_after"] - row["available_before"] == row["delta"]
        by_type[row["credit_type"]] = row["available_after"]
    kinds = [r["kind"] for r in rows if r["credit_type"] == "credits"]
    assert kinds == ["allocation", "usage", "reserve", "capture"]


def test_usage_counts_free_actions_and_tags_from_the_catalog(scenario):
    scenario.ok("consume", action="cached_lookup", quantity=4)
    scenario.ok("consume", action="generate")
    scenario.ok("reserve", hold_id="h", action="generate", ttl_seconds=60)
    scenario.ok("capture", hold_id="h", amount=1)
    usage = scenario.states["usage"].counters["rm_usage_daily"]
    day = date(2024, 1, 31)
    cached = usage[("acct", day, "cached_lookup", "credits")]
    assert (cached["count"], cached["credits"], cached["cost"]) == (4, 0, 0)
    assert cached["tags"] == ["non_ai", "cached"]
    generate = usage[("acct", day, "generate", "credits")]
    # starter prices generate at 3: one consume (3) and one hold (3) of which 1 was captured.
    assert (generate["count"], generate["credits"], generate["cost"]) == (2, 4, 6)
    assert generate["tags"] == ["ai"]
    events = scenario.ledger.events()
    assert sum(r["credits"] for r in usage.values()) == spent_fold(events)
    folded = usage_fold(events)
    assert {k: (r["count"], r["cost"]) for k, r in usage.items()} == {
        ("acct", date.fromisoformat(d), a, ct): (c["count"], c["cost"])
        for (d, a, ct), c in folded.items()
    }


def test_analytics_records_revenue_conversion_and_refills():
    scenario = Scenario()
    scenario.ok("open_account", plan="free")
    scenario.ok(
        "purchase", pack="messages_100", payment_reference="pi_1", amount_paid=300, currency="usd"
    )
    scenario.clock.advance(days=3)
    scenario.ok(
        "purchase", pack="messages_100", payment_reference="pi_2", amount_paid=300, currency="usd"
    )
    state = scenario.states["analytics"]
    revenue = state.counters["rm_analytics_revenue"][("purchase", "messages_100", "usd")]
    assert (revenue["purchases"], revenue["amount_cents"], revenue["credits"]) == (2, 600, 200)
    account = state.rows("rm_analytics_accounts").get("acct")
    assert account is not None
    assert account["started_free"] and account["conversion"] == "purchase"
    assert account["refills"] == 2
    assert account["last_refill_at"] - account["first_refill_at"] == timedelta(days=3)
    outstanding = state.counters["rm_analytics_outstanding"]
    aggregate = scenario.ledger.account()
    for credit_type, row in outstanding.items():
        assert row["available"] == aggregate.available(credit_type[0])


def test_a_hold_returned_to_a_lot_closed_meanwhile_is_forfeited():
    scenario = Scenario()
    scenario.clock.set(datetime(2024, 1, 31, 23, 30, tzinfo=UTC))
    scenario.ok("open_account", plan="free")  # daily credits, reset at midnight
    scenario.ok("reserve", hold_id="h1", action="lookup", quantity=4, ttl_seconds=3600)
    scenario.ok("reserve", hold_id="h2", action="lookup", quantity=4, ttl_seconds=3600)
    scenario.clock.set(datetime(2024, 2, 1, 0, 5, tzinfo=UTC))
    scenario.ok("capture", hold_id="h1", amount=1)  # 3 released to yesterday's closed lot
    scenario.check()
    scenario.ok("release", hold_id="h2")
    scenario.check()
    rows = scenario.states["transactions"].appended["rm_transactions"]
    capture = next(r for r in rows if r["kind"] == "capture")
    assert capture["delta"] < 3, "the released part went to a closed lot: forfeited"


def test_a_plan_change_recomputes_spendable_of_credit_types_without_allocations():
    """`spendable` follows the plan for every credit type the account holds, not only those
    whose allocations the plan change closed."""
    catalog_text = """
version = "spenders-1"
[credit_types.tokens]
unit = "token"
spenders = ["paid"]
[plans.paid]
[plans.free]
[packs.tokens_10]
credit_type = "tokens"
amount = 10
price_cents = 100
plans = ["paid"]
"""
    ledger = Ledger(catalog_text)
    projection = build_projections(ledger.catalog)["balances"]
    state = BatchState(projection.tables)

    def ok(type: str, **fields: Any) -> list[dict[str, Any]]:
        ledger.ok(type, **fields)
        for event in ledger.new_events():
            projection.apply(state, event, event.originator_version)
        projection.finish(state)
        return list(state.rows("rm_balances").of("acct"))

    assert ok("open_account", plan="paid") == []
    (bought,) = ok(
        "purchase", pack="tokens_10", payment_reference="pi_t", amount_paid=100, currency="usd"
    )
    assert (bought["available"], bought["spendable"]) == (10, 10)
    (cancelled,) = ok("change_plan", plan="free")
    assert (cancelled["available"], cancelled["spendable"]) == (10, 0)
    assert ledger.account().balances(ledger.catalog)["tokens"]["spendable"] == 0
    (upgraded,) = ok("change_plan", plan="paid")
    assert upgraded["spendable"] == 10
