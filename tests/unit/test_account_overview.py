"""The account overview (services/api/overview.py): balance parts, money budgets, the rate and
run-out day, and what each seed's plans may buy, computed from read-model rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from domain.catalog import load_catalog
from services.api.overview import RATE_DAYS, account_overview, buy_options, rate_window

CATALOGS = Path(__file__).resolve().parents[2] / "domain" / "catalogs"
SEED_000 = load_catalog(CATALOGS / "seed_000_qr_sessions.toml")
SEED_001 = load_catalog(CATALOGS / "seed_001_stripe_credits.toml")
SEED_002 = load_catalog(CATALOGS / "seed_002_plus_credits.toml")
SEED_003 = load_catalog(CATALOGS / "seed_003_ai_proxy.toml")
SEED_004 = load_catalog(CATALOGS / "seed_004_docweb.toml")
TODAY = date(2024, 3, 10)
OPENED = datetime(2024, 1, 1, tzinfo=UTC)


def account(plan: str, opened_at: datetime = OPENED) -> dict[str, Any]:
    return {
        "account_id": "a-1",
        "plan": plan,
        "opened_at": opened_at,
        "scheduled_plan": None,
        "scheduled_at": None,
        "position": 42,
    }


def balance(credit_type: str, **parts: Any) -> dict[str, Any]:
    row = {
        "credit_type": credit_type,
        "available": 0,
        "held": 0,
        "allocation_remaining": 0,
        "purchased_remaining": 0,
        "overdraft": 0,
        "debt": 0,
        "next_reset_at": None,
    }
    return {**row, **parts}


def test_a_money_budget_plan_carries_its_rate_and_the_free_plan_cannot_spend_purchases() -> None:
    rows = [balance("sessions", available=1790, allocation_remaining=1590, purchased_remaining=200)]
    starter = account_overview(SEED_000, account("starter"), rows, {}, TODAY)
    sessions = starter.credit_types[0]
    assert sessions.money is not None
    assert (sessions.money.credits, sessions.money.per_cents) == (200, 500)
    assert sessions.allocation is not None and sessions.allocation.amount == 1600
    assert sessions.spendable_with_overdraft == 1790
    free = account_overview(SEED_000, account("free"), rows, {}, TODAY)
    # "free tier users cannot use credits": purchased ones are kept, not spendable.
    assert free.credit_types[0].spendable_with_overdraft == 1590
    assert free.credit_types[0].money is None


@given(
    allocation=st.integers(0, 10**6),
    purchased=st.integers(0, 10**6),
    other=st.integers(0, 10**6),
    overdraft=st.integers(0, 10**3),
    debt=st.integers(0, 10**3),
    held=st.integers(0, 10**3),
)
def test_the_parts_add_up_to_what_is_available(
    allocation: int, purchased: int, other: int, overdraft: int, debt: int, held: int
) -> None:
    available = allocation + purchased + other - overdraft - debt
    row = balance(
        "credits",
        available=available,
        allocation_remaining=allocation,
        purchased_remaining=purchased,
        overdraft=overdraft,
        debt=debt,
        held=held,
    )
    for catalog, plan in ((SEED_002, "plus"), (SEED_003, "payg"), (SEED_004, "max")):
        (shown,) = account_overview(catalog, account(plan), [row], {}, TODAY).credit_types
        assert shown.other_remaining == other
        assert shown.available == available and shown.held == held
        assert 0 <= shown.spendable_with_overdraft <= max(available, 0)


@given(spendable=st.integers(0, 10**6), spent=st.integers(0, 10**6), age_days=st.integers(0, 60))
def test_the_run_out_day_is_when_the_rate_spends_what_is_left(
    spendable: int, spent: int, age_days: int
) -> None:
    opened = datetime.combine(TODAY - timedelta(days=age_days), datetime.min.time(), UTC)
    row = balance("credits", available=spendable, purchased_remaining=spendable)
    (shown,) = account_overview(
        SEED_003, account("payg", opened), [row], {"credits": spent}, TODAY
    ).credit_types
    days = min(RATE_DAYS, age_days + 1)
    assert shown.rate_days == days == rate_window(opened, TODAY)
    assert shown.rate_per_day == spent // days
    if shown.rate_per_day == 0:
        assert shown.runs_out_on is None
    else:
        assert shown.runs_out_on is not None
        left_days = (shown.runs_out_on - TODAY).days
        # Enough for `left_days` more days at the rate, not for one more.
        assert left_days * shown.rate_per_day <= spendable < (left_days + 1) * shown.rate_per_day


def test_a_reset_before_the_run_out_day_is_said_instead() -> None:
    tomorrow = datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), UTC)
    row = balance("credits", available=7, allocation_remaining=7, next_reset_at=tomorrow)
    (shown,) = account_overview(
        SEED_004, account("pro"), [row], {"credits": 21}, TODAY
    ).credit_types
    assert shown.rate_per_day == 3
    assert shown.runs_out_on is None and shown.reset_comes_first


def test_what_each_seed_plan_may_buy() -> None:
    plus, free = buy_options(SEED_002, "plus"), buy_options(SEED_002, "free")
    assert [p.pack for p in plus.packs] == ["credits_200"] and plus.refused == []
    assert free.packs == [] and free.refused[0].plans_that_may == ["PLUS"]
    payg = buy_options(SEED_003, "payg")
    assert [p.price_cents for p in payg.packs] == [999, 2499, 5999, 19999]
    starter = buy_options(SEED_000, "starter")
    assert [(a.credit_type, a.min_cents, a.max_cents) for a in starter.amounts] == [
        ("sessions", 500, 100000)
    ]
    assert [p.pack for p in starter.packs] == ["voice_10", "voice_50"]
    pro = buy_options(SEED_001, "pro")
    assert [(t.credit_type, t.auto is not None) for t in pro.top_ups] == [
        ("ai_tokens", False),
        ("api_calls", True),
    ]
    (docweb,) = buy_options(SEED_004, "free").refused
    assert docweb.plans_that_may == ["Pro", "Max"]
    assert docweb.reason == "credits cannot be bought: upgrade your tier (Pro or Max) for more."
    assert buy_options(SEED_004, "max").refused[0].plans_that_may == []
