"""`spendable` beside `available` in every reply's balances: what the account's plan may spend
now. Seed 000's free tier keeps purchased session credits it may not use: `available` counts
them, `spendable` does not, and a refusal quotes the figure that refused it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kit.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("seed_000_qr_sessions.toml")


def buy_sessions(ledger: Ledger, amount_paid: int, reference: str = "pi_1") -> None:
    ledger.ok(
        "purchase",
        credit_type="sessions",
        payment_reference=reference,
        amount_paid=amount_paid,
        currency="usd",
    )


def test_a_plan_that_may_spend_everything_has_spendable_equal_to_available(ledger):
    reply = ledger.ok("open_account", plan="starter")
    buy_sessions(ledger, 500)  # 200 units
    reply = ledger.ok("consume", action="ai_session")
    sessions = reply.balances["sessions"]
    assert (sessions.available, sessions.spendable) == (1600 + 200 - 2, 1798)


def test_after_a_cancel_to_free_purchased_credits_stay_available_but_not_spendable(ledger):
    ledger.ok("open_account", plan="starter")
    buy_sessions(ledger, 500)  # 200 units, kept through the cancel
    cancelled = ledger.ok("change_plan", plan="free")
    sessions = cancelled.balances["sessions"]
    assert (sessions.available, sessions.purchased_remaining) == (300, 200)
    assert sessions.spendable == 100, "only the free allocation"

    used = ledger.ok("consume", action="ai_session", quantity=30)
    assert (used.balances["sessions"].available, used.balances["sessions"].spendable) == (240, 40)

    refused = ledger.rejected("consume", "insufficient_credits", action="ai_session", quantity=21)
    assert "needs 42, 40 spendable" in refused.error.message
    assert refused.balances["sessions"].spendable == 40, "the refusal quotes it"
    assert refused.balances["sessions"].available == 240

    upgraded = ledger.ok("change_plan", plan="premium")
    assert upgraded.balances["sessions"].spendable == upgraded.balances["sessions"].available


def test_voice_credits_are_spendable_on_every_plan(ledger):
    ledger.ok("open_account", plan="free")
    reply = ledger.ok(
        "purchase", pack="voice_10", payment_reference="pi_v", amount_paid=500, currency="usd"
    )
    assert (reply.balances["voice"].available, reply.balances["voice"].spendable) == (10, 10)
    assert reply.balances["sessions"].spendable == 100


STEPS = st.lists(
    st.tuples(
        st.sampled_from(("consume", "buy", "plan", "reserve", "release", "days")),
        st.integers(1, 400),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, database=None)
@given(steps=STEPS)
def test_spendable_is_what_a_spend_may_take_and_never_more_than_available(steps):
    """Property: in every reply, spendable ≤ available (equal when the plan may spend
    purchased credits); a spend of exactly `spendable` succeeds, one more is refused."""
    ledger = Ledger("seed_000_qr_sessions.toml")
    ledger.ok("open_account", plan="starter")
    holds: list[str] = []
    for index, (step, n) in enumerate(steps):
        if step == "consume":
            reply = ledger.send("consume", "acct", action="non_ai_session", quantity=n)
        elif step == "buy":
            reply = ledger.send(
                "purchase",
                "acct",
                credit_type="sessions",
                payment_reference=f"pi_{index}",
                amount_paid=500 * (1 + n % 3),
                currency="usd",
            )
        elif step == "plan":
            reply = ledger.send("change_plan", "acct", plan=("free", "starter", "premium")[n % 3])
        elif step == "reserve":
            reply = ledger.send(
                "reserve",
                "acct",
                hold_id=f"h{index}",
                action="ai_session",
                quantity=n,
                ttl_seconds=600,
            )
            if reply.status == "accepted":
                holds.append(f"h{index}")
        elif step == "release" and holds:
            reply = ledger.send("release", "acct", hold_id=holds.pop())
        else:
            ledger.clock.advance(days=n % 40)
            continue
        for balance in reply.balances.values():
            assert balance.spendable <= balance.available
        account = ledger.account()
        if ledger.catalog.may_spend_purchased(account.plan, "sessions"):
            assert reply.balances["sessions"].spendable == reply.balances["sessions"].available
    # Caught up with time first (a renewal refills), as the spend will be.
    sessions = ledger.ok("expire").balances["sessions"].spendable
    if sessions > 0:
        over = ledger.send("consume", "acct", credit_type="sessions", amount=sessions + 1)
        assert over.error is not None and over.error.code == "insufficient_credits"
        assert over.balances["sessions"].spendable == sessions
        ledger.ok("consume", credit_type="sessions", amount=sessions)
        assert ledger.ok("expire").balances["sessions"].spendable == 0
