"""The analytics read model's new parts, pure: the paid and owed parts of what is outstanding
equal the aggregate's after every command of a script that spends, holds, captures in part,
releases, refunds and expires paid lots; breakage counts expiries, reset renewals, plan changes
and holds returned to closed lots, per day; revenue and refills per day."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from projections.reconcile import paid_and_owed
from tests.projections.test_pure_projections import CATALOG, Scenario

SPLIT = ("paid_available", "paid_held", "owed")


def check_split(scenario: Scenario) -> None:
    counters = scenario.states["analytics"].counters["rm_analytics_outstanding_split"]
    account = scenario.ledger.account()
    for credit_type in CATALOG.credit_types:
        row = counters.get((credit_type,), dict.fromkeys(SPLIT, 0))
        assert tuple(row[c] for c in SPLIT) == paid_and_owed(account, credit_type), credit_type


def breakage(scenario: Scenario) -> Counter[tuple[date, str, str]]:
    counters = scenario.states["analytics"].counters["rm_analytics_breakage"]
    return Counter({key: row["credits"] for key, row in counters.items()})


def test_paid_and_owed_parts_follow_the_aggregate_through_every_movement() -> None:
    scenario = Scenario()
    scenario.clock.set(datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
    steps: list[tuple[str, dict[str, object]]] = [
        ("open_account", {"plan": "pro"}),
        (
            "purchase",
            {
                "pack": "credits_1000",
                "payment_reference": "pi_1",
                "amount_paid": 4000,
                "currency": "usd",
            },
        ),
        (
            "purchase",
            {
                "pack": "credits_1000",
                "payment_reference": "pi_2",
                "amount_paid": 4000,
                "currency": "usd",
            },
        ),
        # Past the allocation (3000): into the paid lots.
        ("consume", {"credit_type": "credits", "amount": 3400}),
        ("reserve", {"hold_id": "h1", "credit_type": "credits", "amount": 300, "ttl_seconds": 600}),
        ("capture", {"hold_id": "h1", "amount": 40, "final": False}),
        ("capture", {"hold_id": "h1", "amount": 60}),
        ("reserve", {"hold_id": "h2", "credit_type": "credits", "amount": 200, "ttl_seconds": 600}),
        ("release", {"hold_id": "h2"}),
        ("reserve", {"hold_id": "h3", "credit_type": "credits", "amount": 500, "ttl_seconds": 600}),
        # A refund of the whole first lot while part of it is held: the held part stays until
        # the hold ends, then is lost.
        ("revoke", {"payment_reference": "pi_1", "reason": "refund"}),
        ("capture", {"hold_id": "h3", "amount": 100}),
        ("revoke", {"payment_reference": "pi_2", "amount": 50, "reason": "refund"}),
        # The refunds left a debt: the next purchase repays it first.
        (
            "purchase",
            {
                "pack": "credits_1000",
                "payment_reference": "pi_3",
                "amount_paid": 4000,
                "currency": "usd",
            },
        ),  # repays it
    ]
    for command_type, fields in steps:
        scenario.ok(command_type, **fields)
        check_split(scenario)
    scenario.clock.advance(days=400)  # the packs' lots expire (365 days)
    scenario.ok("expire")
    check_split(scenario)
    counters = scenario.states["analytics"].counters["rm_analytics_outstanding_split"]
    assert counters[("credits",)]["paid_available"] == 0
    expired = {k: v for k, v in breakage(scenario).items() if k[2] == "expired"}
    assert sum(expired.values()) > 0


def test_breakage_counts_expiries_resets_plan_changes_and_holds_on_closed_lots() -> None:
    scenario = Scenario()
    scenario.clock.set(datetime(2024, 1, 31, 23, 30, tzinfo=UTC))
    scenario.ok("open_account", plan="free")  # credits 10 a day (reset), trial 25 for 14 days
    scenario.ok("consume", credit_type="credits", amount=3)
    scenario.ok("reserve", hold_id="h1", credit_type="credits", amount=4, ttl_seconds=3600)
    scenario.clock.set(datetime(2024, 2, 1, 0, 5, tzinfo=UTC))
    # The day's lot reset: 3 unheld lost; then 3 of the 4 held return to the closed lot.
    scenario.ok("capture", hold_id="h1", amount=1)
    assert breakage(scenario)[(date(2024, 2, 1), "credits", "forfeited")] == 3 + 3
    scenario.clock.set(datetime(2024, 2, 20, 12, 0, tzinfo=UTC))
    scenario.ok("expire")  # the trial (25) expired on the 14th; today's lot resets too
    found = breakage(scenario)
    assert found[(date(2024, 2, 20), "credits", "expired")] == 25
    assert sum(v for k, v in found.items() if k[2] == "expired") == 25
    scenario.ok("change_plan", plan="starter")  # the free plan's lots close
    after = breakage(scenario)
    forfeited_today = after[(date(2024, 2, 20), "credits", "forfeited")]
    assert forfeited_today == found[(date(2024, 2, 20), "credits", "forfeited")] + 10
    assert after[(date(2024, 2, 20), "messages", "forfeited")] == 20


def test_revenue_and_refills_count_per_day() -> None:
    scenario = Scenario()
    scenario.clock.set(datetime(2024, 3, 1, 23, 0, tzinfo=UTC))
    scenario.ok("open_account", plan="free")
    for n in range(3):
        scenario.ok(
            "purchase",
            pack="messages_100",
            payment_reference=f"pi_{n}",
            amount_paid=300,
            currency="usd",
        )
        scenario.clock.advance(hours=1)
    state = scenario.states["analytics"]
    revenue = state.counters["rm_analytics_revenue_daily"]
    first, second = date(2024, 3, 1), date(2024, 3, 2)
    assert revenue[(first, "purchase", "messages_100", "usd")]["purchases"] == 1
    assert revenue[(second, "purchase", "messages_100", "usd")]["amount_cents"] == 600
    refills = state.counters["rm_analytics_refills"]
    assert refills[(first, "acct")]["refills"] == 1 and refills[(second, "acct")]["refills"] == 2
    assert sum(r["refills"] for r in refills.values()) == 3
