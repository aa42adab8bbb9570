"""The account's value objects on their own: lots, holds, allocations, top-ups, daily usage,
what is owed; the typed results' JSON; the events' stored topics."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.utils import get_topic, resolve_topic
from hypothesis import given
from hypothesis import strategies as st

from domain import events, results
from domain.account import Account, Context
from domain.allocations import AllocationState, renewal_terms, starting_amount
from domain.catalog import Allocation, AutoTopUp, TopUp, load_catalog
from domain.errors import ErrorCode, LedgerError
from domain.fields import total
from domain.holds import CLOSED_HOLDS_REMEMBERED, Hold, Holds
from domain.lots import Lot, Lots, draw
from domain.owed import Owed
from domain.periods import period_containing
from domain.top_ups import FAILED_TOP_UPS_REMEMBERED, TopUpRequest, TopUps, TopUpSettings
from domain.usage import DailyUsage
from tests.kit.ledger import Ledger
from tests.unit.account_history import describe


def history_state(account: Account) -> dict[str, Any]:
    return describe(account, CATALOG)


T0 = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)
CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml")


def lot(n: int, unheld: int, *, priority: int = 10, expires_in_days: int | None = None) -> Lot:
    expires_at = None if expires_in_days is None else T0 + timedelta(days=expires_in_days)
    return Lot(
        lot_id=f"lot-{n}",
        seq=n,
        credit_type="credits",
        source="promotional",
        amount=unheld,
        remaining=unheld,
        held=0,
        priority=priority,
        effective_at=T0 + timedelta(seconds=n),
        expires_at=expires_at,
        paid=False,
        payment_reference=None,
    )


lots_strategy = st.lists(
    st.tuples(st.integers(0, 50), st.integers(0, 3), st.one_of(st.none(), st.integers(1, 3))),
    max_size=6,
).map(
    lambda specs: [
        lot(n, unheld, priority=priority, expires_in_days=days)
        for n, (unheld, priority, days) in enumerate(specs, 1)
    ]
)


@given(lots=lots_strategy, amount=st.integers(0, 400))
def test_a_draw_takes_in_burn_order_and_reports_what_the_lots_lacked(lots, amount):
    breakdown, shortfall = draw(lots, amount)
    assert total(breakdown) + shortfall == amount
    assert shortfall == max(0, amount - sum(lot.unheld for lot in lots))
    by_id = {lot.lot_id: lot for lot in lots}
    keys = [by_id[part["lot_id"]].burn_key() for part in breakdown]
    assert keys == sorted(keys)
    assert all(0 < part["amount"] <= by_id[part["lot_id"]].unheld for part in breakdown)
    # Every lot before the last one drawn was drawn in full.
    assert all(part["amount"] == by_id[part["lot_id"]].unheld for part in breakdown[:-1])


def test_a_lot_closed_under_a_hold_keeps_the_held_part_and_loses_it_on_release():
    lots = Lots()
    lots.add(
        lot_id="lot-1",
        credit_type="credits",
        source="allocation",
        amount=10,
        remaining=10,
        priority=10,
        effective_at=T0,
        expires_at=None,
        paid=False,
        payment_reference=None,
    )
    lots.hold([{"lot_id": "lot-1", "amount": 4}])
    lots["lot-1"].close(forfeited=6)
    assert (lots["lot-1"].remaining, lots["lot-1"].held) == (4, 4)
    lots["lot-1"].check(held_by_holds=4)
    assert lots.forfeited([{"lot_id": "lot-1", "amount": 4}]) == 4
    lots.release([{"lot_id": "lot-1", "amount": 4}])
    assert lots["lot-1"].remaining == 0
    lots.forget_if_spent("lot-1", unless=lambda lot_id: lot_id == "lot-1")
    assert lots.get("lot-1") is not None, "the current allocation lot is kept"
    lots.forget_if_spent("lot-1", unless=lambda lot_id: False)
    assert lots.get("lot-1") is None
    with pytest.raises(AssertionError):
        lots.add(
            lot_id="lot-1",  # ids count up: lot-2 comes next
            credit_type="credits",
            source="trial",
            amount=1,
            remaining=1,
            priority=20,
            effective_at=T0,
            expires_at=None,
            paid=False,
            payment_reference=None,
        )


def test_lots_refuse_a_hold_on_a_lot_that_is_gone():
    lots = Lots()
    with pytest.raises(AssertionError):
        lots.check({"lot-7": 1})


@given(
    parts=st.lists(st.integers(1, 20), min_size=1, max_size=5),
    data=st.data(),
)
def test_a_capture_takes_the_first_parts_and_releases_the_rest(parts, data):
    hold = Hold(
        hold_id="h",
        credit_type="credits",
        amount=sum(parts),
        parts=[{"lot_id": f"lot-{i}", "amount": a} for i, a in enumerate(parts)],
        expires_at=T0,
        action=None,
    )
    amount = data.draw(st.integers(0, hold.amount))
    captured, released = hold.split(amount)
    assert total(captured) == amount and total(released) == hold.amount - amount
    per_lot: dict[str, int] = {}
    for part in captured + released:
        per_lot[part["lot_id"]] = per_lot.get(part["lot_id"], 0) + part["amount"]
    assert per_lot == {p["lot_id"]: p["amount"] for p in hold.parts}
    assert [p["lot_id"] for p in captured] == [p["lot_id"] for p in hold.parts[: len(captured)]]


def test_closed_holds_tell_expired_from_unknown_and_are_forgotten_oldest_first():
    holds = Holds()
    for n in range(CLOSED_HOLDS_REMEMBERED + 1):
        hold = Hold(f"h{n}", "credits", 1, [{"lot_id": "lot-1", "amount": 1}], T0, None)
        holds.add(hold)
        holds.close(f"h{n}", "expired", hold.parts)
    assert not holds.used("h0") and holds.used("h1")
    with pytest.raises(LedgerError) as expired:
        holds.open_hold("h1")
    assert expired.value.code == ErrorCode.hold_expired
    with pytest.raises(LedgerError) as unknown:
        holds.open_hold("h0")
    assert unknown.value.code == ErrorCode.hold_not_found


def allocation_state(period_index: int, renewal: str) -> AllocationState:
    period = period_containing("month", T0, T0)
    return AllocationState(
        "credits", "month", period_index, period.period_id, period.start, period.end, renewal,
        "lot-1", 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("renewal", "cap", "elapsed", "unused", "expected"),
    [
        # (amount, forfeited, carried_over)
        ("reset", None, 1, 30, (100, 30, 0)),
        ("reset", None, 3, 30, (100, 30, 0)),
        ("add", None, 3, 30, (300, 0, 0)),
        ("rollover", 50, 1, 30, (130, 30, 30)),
        ("rollover", 50, 1, 80, (150, 80, 50)),
        ("rollover", 250, 3, 30, (100 + 230, 30, 230)),  # skipped periods carry in full
    ],
)
def test_renewal_terms(renewal, cap, elapsed, unused, expected):
    rule = Allocation(amount=100, period="month", renewal=renewal, rollover_cap=cap)
    period = period_containing("month", T0, T0 + timedelta(days=31 * elapsed - 15))
    current = allocation_state(period.index - elapsed, renewal)
    terms = renewal_terms(current, rule, period, unused)
    assert (terms.amount, terms.forfeited, terms.carried_over) == expected
    assert (terms.renewal, terms.periods_elapsed) == (renewal, elapsed)


def test_a_renewal_without_a_rule_resets_to_nothing():
    period = period_containing("month", T0, T0 + timedelta(days=40))
    terms = renewal_terms(allocation_state(period.index - 1, "add"), None, period, 5)
    assert (terms.renewal, terms.amount, terms.forfeited) == ("reset", 0, 5)


def test_an_allocation_starting_mid_period_counts_what_was_used_in_a_period_of_its_kind():
    rule = Allocation(amount=10, period="day")
    assert starting_amount(rule, None) == (10, 0)
    assert starting_amount(rule, ("day", 3)) == (7, 3)
    assert starting_amount(rule, ("day", 13)) == (0, 13)
    assert starting_amount(rule, ("month", 3)) == (10, 0)


def test_daily_usage_counts_per_day_and_refuses_past_the_caps():
    usage = DailyUsage()
    usage.count("2024-01-31", "generate", "r1", 4)
    usage.count("2024-01-31", "generate", None, 1)
    limits: dict[str, Any] = {"action_limit": 5, "resource_limit": 4}
    with pytest.raises(LedgerError) as caught:
        usage.check_limits("2024-01-31", action="generate", resource=None, quantity=1, **limits)
    assert caught.value.code == ErrorCode.daily_limit_reached
    assert caught.value.message == "generate: 5 of 5 used today (UTC)"
    with pytest.raises(LedgerError) as caught:
        usage.check_limits("2024-01-31", action=None, resource="r1", quantity=1, **limits)
    assert caught.value.code == ErrorCode.resource_limit_reached
    usage.check_limits("2024-02-01", action="generate", resource="r1", quantity=4, **limits)
    usage.count("2024-02-01", None, "r2", 2)
    assert (usage.day, usage.by_action, usage.by_resource) == ("2024-02-01", {}, {"r2": 2})


@given(overdraft=st.integers(0, 50), debt=st.integers(0, 50), amount=st.integers(0, 120))
def test_new_credits_repay_the_overdraft_first_then_the_debt(overdraft, debt, amount):
    owed = Owed()
    owed.add("credits", overdraft=overdraft, debt=debt)
    repaid_overdraft, repaid_debt = owed.repayment("credits", amount)
    assert repaid_overdraft == min(overdraft, amount)
    assert repaid_debt == min(debt, amount - repaid_overdraft)
    owed.add("credits", overdraft=-repaid_overdraft, debt=-repaid_debt)
    assert owed.of("credits") == overdraft + debt - repaid_overdraft - repaid_debt
    owed.check()  # nothing owed is absent, not zero
    with pytest.raises(AssertionError):
        owed.add("credits", debt=-(debt - repaid_debt) - 1)


def top_up_request(n: int, trigger: str = "auto") -> TopUpRequest:
    return TopUpRequest(f"tu-{n}", "credits", 100, 400, "usd", trigger)


def test_auto_top_ups_wait_for_the_pending_one_and_stop_at_the_monthly_cap():
    rule = TopUp(
        price_per_credit_cents=4,
        min_credits=100,
        max_credits=1000,
        auto=AutoTopUp(threshold=50, amount=100, max_per_month=2),
    )
    top_ups = TopUps()
    settings = top_ups.auto_settings("credits", rule)
    assert settings == TopUpSettings("auto", 50, 100, 2)
    assert top_ups.wants_auto("credits", settings, "2024-01")
    top_ups.request(top_up_request(1), "2024-01")
    assert not top_ups.wants_auto("credits", settings, "2024-01"), "one is pending"
    top_ups.fail("tu-1")
    top_ups.request(top_up_request(2), "2024-01")
    top_ups.complete("tu-2")
    assert not top_ups.wants_auto("credits", settings, "2024-01"), "two this month, failed too"
    assert top_ups.wants_auto("credits", settings, "2024-02")
    top_ups.configure("credits", TopUpSettings("off", None, None, None))
    assert top_ups.auto_settings("credits", rule) is None


def test_a_failed_top_up_stays_payable_and_the_oldest_failed_are_forgotten():
    top_ups = TopUps()
    for n in range(1, FAILED_TOP_UPS_REMEMBERED + 2):
        top_ups.request(top_up_request(n, "on_demand"), "2024-01")
        top_ups.fail(f"tu-{n}")
    assert top_ups.awaiting_payment("tu-1") is None
    assert top_ups.settled_by("tu-2", "credits", 100) == top_up_request(2, "on_demand")
    with pytest.raises(LedgerError, match="amount is not the 100 requested"):
        top_ups.settled_by("tu-2", "credits", 99)
    with pytest.raises(LedgerError, match="no pending messages top-up 'tu-2'"):
        top_ups.settled_by("tu-2", "messages", None)
    top_ups.complete("tu-2")
    assert top_ups.awaiting_payment("tu-2") is None
    top_ups.check()


def test_a_result_is_its_fields_in_order_with_times_as_iso_8601():
    at = datetime(2024, 2, 29, 10, 0, tzinfo=UTC)
    reserved = results.Reserved("h1", "credits", 5, at, [{"lot_id": "lot-1", "amount": 5}])
    assert list(reserved.to_json().items()) == [
        ("hold_id", "h1"),
        ("credit_type", "credits"),
        ("amount", 5),
        ("expires_at", "2024-02-29T10:00:00+00:00"),
        ("breakdown", [{"lot_id": "lot-1", "amount": 5}]),
    ]
    assert results.PlanChangeScheduled("pro", at).to_json() == {
        "plan": "pro",
        "effective_at": "2024-02-29T10:00:00+00:00",
        "changed": False,
    }
    assert results.TopUpFailed("tu-1", None).to_json() == {
        "top_up_id": "tu-1",
        "recovery_url": None,
    }


def every_event_class() -> list[type[events.Event]]:
    found, waiting = [], [events.Event]
    while waiting:
        cls = waiting.pop()
        found.append(cls)
        waiting += cls.__subclasses__()
    return found


@pytest.mark.parametrize("cls", every_event_class(), ids=lambda c: c.__name__)
def test_every_event_keeps_the_topic_it_was_first_stored_under(cls):
    topic = f"domain.account:Account.{cls.__name__}"
    assert get_topic(cls) == topic
    assert resolve_topic(topic) is cls is getattr(Account, cls.__name__)


def test_the_snapshot_keeps_its_topic():
    assert get_topic(Account.Snapshot) == "domain.account:Account.Snapshot"
    assert resolve_topic("domain.account:Account.Snapshot") is Account.Snapshot


def test_a_deep_copy_of_an_account_is_equal_and_shares_nothing_that_changes():
    """Copies made by the repository's cache must not see what a command does to another."""
    ledger = Ledger("demo.toml")
    ledger.ok("open_account", plan="pro")
    ledger.ok("reserve", hold_id="h1", action="generate", ttl_seconds=60)
    ledger.ok("consume", action="generate", resource="r1")
    ledger.ok("request_top_up", credit_type="credits", amount=100)
    original = ledger.account()
    before = history_state(original)
    copied = copy.deepcopy(original)
    assert copied == original
    ctx = Context(ledger.catalog, ledger.clock.now(), "c-copy")
    copied.capture(ctx, hold_id="h1", amount=1)
    copied.consume(
        ctx, action="generate", credit_type=None, amount=None, quantity=2, resource="r1",
        metadata={},
    )  # fmt: skip
    copied.fail_top_up(ctx, top_up_id="tu-1", reason="declined", recovery_url=None)
    copied.change_plan(ctx, plan="starter", effective="next_period")
    assert history_state(original) == before
    assert history_state(copied) != before
