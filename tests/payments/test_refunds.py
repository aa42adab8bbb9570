"""Refunds from cumulative amounts: whatever the order, timing and redelivery of `charge.refunded`,
the credits revoked end at floor(refunded * credits / paid) (all of them for a full refund).

The pure step (refunds.revoke_step) is checked over arbitrary orders; then the real table
(purchases.PostgresPurchases.plan_refund) with crashes between planning and sending, and the
revokes applied by the ledger service, which must end with exactly that many credits revoked.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.settings import Settings
from services.cli.main import main
from services.payments import mapping as m
from services.payments.metadata import PaymentMetadata
from services.payments.purchases import PaymentState, PostgresPurchases
from services.payments.refunds import Refunded, Revoked, revoke_step, target_credits
from tests.payments.conftest import memory_ledger

PAID = 599
CREDITS = 200


def _fold(amounts: list[int], credits: int, paid: int) -> int:
    """Credits revoked after handling these cumulative refunded amounts in this order."""
    revoked = Revoked()
    total = 0
    for refunded in amounts:
        step = revoke_step(revoked, refunded, credits, paid)
        if step is None:
            continue
        assert step.amount is None or step.amount >= 0
        total += credits - total if step.amount is None else step.amount
        revoked = step.after
        assert total == revoked.credits <= credits
    return total


def test_the_issue_example_two_partial_refunds_of_one_charge_revoke_100() -> None:
    # 100 then 200 cents refunded, in the same second: the events say 100 and 300 cumulated.
    assert target_credits(CREDITS, 300, PAID) == 100
    for order in ([100, 300], [300, 100], [300, 300, 100, 100], [100, 100, 300]):
        assert _fold(order, CREDITS, PAID) == 100


def test_partial_refunds_revoke_their_share_and_the_full_refund_all_that_is_left() -> None:
    revoked = Revoked()
    amounts: list[int | None] = []
    for refunded in (100, 300, 599):
        step = revoke_step(revoked, refunded, CREDITS, PAID)
        assert step is not None
        amounts.append(step.amount)
        revoked = step.after
    # floor(200*100/599) = 33, floor(200*300/599) - 33 = 67, then everything left.
    assert amounts == [33, 67, None]
    assert revoke_step(revoked, 599, CREDITS, PAID) is None
    assert revoke_step(revoked, 300, CREDITS, PAID) is None


@st.composite
def refund_histories(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """Credits, amount paid, and the cumulative refunded amounts events carry, delivered in
    any order, some several times (Stripe repeats and reorders webhooks)."""
    paid = draw(st.integers(min_value=1, max_value=100_000))
    credits = draw(st.integers(min_value=0, max_value=10**9))
    refunds = draw(st.lists(st.integers(min_value=1, max_value=paid), min_size=1, max_size=6))
    cumulative: list[int] = []
    total = 0
    for amount in refunds:
        if total + amount > paid:
            break
        total += amount
        cumulative.append(total)
    cumulative = cumulative or [min(refunds[0], paid)]
    deliveries = draw(st.lists(st.sampled_from(cumulative), min_size=1, max_size=12))
    return credits, paid, draw(st.permutations([*deliveries, *cumulative]))


@given(refund_histories())
def test_any_order_and_redelivery_ends_at_the_target_of_the_total(
    history: tuple[int, int, list[int]],
) -> None:
    credits, paid, deliveries = history
    expected = target_credits(credits, max(deliveries), paid)
    assert expected == (credits if max(deliveries) >= paid else credits * max(deliveries) // paid)
    assert _fold(deliveries, credits, paid) == expected


# ---------------------------------------------------------------------- the real table


@pytest.fixture(scope="module")
async def purchases(settings: Settings, pg_database: str) -> AsyncIterator[PostgresPurchases]:
    store = await PostgresPurchases.open(settings)
    yield store
    await store.close()


def _refunded(reference: str, account: str, refunded_cents: int) -> Refunded:
    meta = PaymentMetadata(account, "pack", "credits", CREDITS, pack="credits_200")
    purchase = m.purchase_command(meta, reference, PAID, "usd")
    return Refunded(meta, purchase, PAID, refunded_cents)


@settings(max_examples=30, deadline=None)
@given(
    deliveries=st.lists(
        st.tuples(st.sampled_from([100, 300, 450, 599]), st.booleans()), min_size=1, max_size=8
    )
)
@pytest.mark.integration
async def test_the_table_converges_through_crashes_redeliveries_and_any_order(
    purchases: PostgresPurchases, deliveries: list[tuple[int, bool]]
) -> None:
    """Each delivery plans in PostgreSQL; `sent` False is a crash after planning, before the
    commands reached Kafka (they stay unsent and go with the next delivery)."""
    account = f"acct-{uuid.uuid4().hex[:10]}"
    reference = f"pi_{uuid.uuid4().hex[:14]}"
    ledger = memory_ledger("seed_002_plus_credits.toml")
    ledger.ok("open_account", account, "open", plan="plus")
    for refunded, sent in deliveries:
        event = _refunded(reference, account, refunded)
        plan = await purchases.plan_refund(event)
        assert plan.state == PaymentState.AWAITING_REPLY
        if not sent:
            continue  # crashed: nothing reached the ledger, nothing marked sent
        replies = ledger.apply([event.purchase, *plan.revokes])
        assert all(r.status in ("accepted", "duplicate") for r in replies), replies
        await purchases.mark_revokes_sent([c["command_id"] for c in plan.revokes])
    last = _refunded(reference, account, deliveries[0][0])
    plan = await purchases.plan_refund(last)  # the redelivery after the last crash
    ledger.apply([last.purchase, *plan.revokes])
    (lot,) = [x for x in ledger.account(account).lots.values() if x.source == "purchase"]
    assert lot.revoked == target_credits(CREDITS, max(r for r, _ in deliveries), PAID)


@pytest.mark.integration
async def test_a_refused_payment_plans_no_revoke(purchases: PostgresPurchases) -> None:
    reference = f"pi_{uuid.uuid4().hex[:14]}"
    event = _refunded(reference, "acct-refused", 300)
    assert await purchases.record_sent(event.purchase) == PaymentState.AWAITING_REPLY
    payment = await purchases.begin_refund(event.purchase["command_id"], "not_eligible", "no")
    assert payment is not None and payment.state == PaymentState.REFUND_PENDING
    plan = await purchases.plan_refund(event)
    assert (plan.state, plan.revokes) == (PaymentState.REFUND_PENDING, ())
    assert await purchases.sendable([event.purchase]) == ()


@pytest.mark.integration
@pytest.mark.usefixtures("logging_restored")
async def test_credits_payments_unapplied_lists_refused_payments_with_their_state(
    purchases: PostgresPurchases,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    refunded = _refunded(f"pi_{uuid.uuid4().hex[:14]}", "acct-listed", 599).purchase
    failed = _refunded(f"pi_{uuid.uuid4().hex[:14]}", "acct-listed", 599).purchase
    granted = _refunded(f"pi_{uuid.uuid4().hex[:14]}", "acct-listed", 599).purchase
    for purchase in (refunded, failed, granted):
        await purchases.record_sent(purchase)
        await purchases.begin_refund(purchase["command_id"], "not_eligible", "plan free")
    await purchases.mark_refunded(refunded["command_id"], "re_listed", 599)
    await purchases.mark_refund_failed(failed["command_id"], "card_declined: gone")
    # Granted after the refusal, while the refund is pending: it stays pending (its credits
    # are revoked, the refund goes on).
    still = await purchases.mark_applied(granted["command_id"])
    assert still is not None and still.state == PaymentState.REFUND_PENDING
    monkeypatch.setenv("CREDITS_PG_DATABASE", settings.pg_database)

    assert await asyncio.to_thread(main, ["payments", "unapplied", "--limit", "1000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mine = {line.split()[3]: line for line in lines if "acct-listed" in line}
    assert "refunded" in mine[refunded["payment_reference"]]
    assert "re_listed (599)" in mine[refunded["payment_reference"]]
    assert "refund_failed" in mine[failed["payment_reference"]]
    assert "card_declined: gone" in mine[failed["payment_reference"]]
    assert "refund_pending" in mine[granted["payment_reference"]]
