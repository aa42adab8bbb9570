"""Stripe events → commands: the pure mapping, checked against the ledger that applies them."""

from __future__ import annotations

from typing import Any

import pytest

from domain.commands import parse_command
from infra.dlq import DlqCode
from services.payments import mapping as m
from services.payments import metadata as md
from services.payments import refunds
from services.payments.errors import BadInput
from services.payments.metadata import PaymentMetadata
from tests.kit.ledger import Ledger
from tests.payments.conftest import memory_ledger

PACK = PaymentMetadata("acct-1", "pack", "credits", 200, pack="credits_200")


def intent(meta: PaymentMetadata | None = PACK, **fields: Any) -> dict[str, Any]:
    return {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 599,
        "currency": "usd",
        "customer": "cus_1",
        "status": "succeeded",
        "metadata": meta.to_stripe() if meta else {},
        **fields,
    }


def session(**fields: Any) -> dict[str, Any]:
    return {
        "id": "cs_1",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": "pi_1",
        "customer": "cus_1",
        "amount_total": 599,
        "currency": "usd",
        "metadata": PACK.to_stripe(),
        **fields,
    }


def test_a_paid_checkout_session_purchases_the_pack_with_an_id_from_its_payment_intent() -> None:
    outcome = m.checkout_session_paid(session())
    assert outcome.commands == (
        {
            "type": "purchase",
            "command_id": "stripe:pi_1:purchase",
            "account_id": "acct-1",
            "payment_reference": "pi_1",
            "amount_paid": 599,
            "currency": "usd",
            "pack": "credits_200",
        },
    )
    assert outcome.link == ("acct-1", "cus_1")
    parse_command(outcome.commands[0])


def test_the_session_and_its_payment_intent_give_the_very_same_purchase() -> None:
    # Either event may come first, or both: the ledger's receipt dedupes the second.
    assert (
        m.checkout_session_paid(session()).commands == m.payment_intent_succeeded(intent()).commands
    )


def test_an_unpaid_session_waits_for_async_payment_and_foreign_sessions_are_ignored() -> None:
    assert m.checkout_session_paid(session(payment_status="unpaid")).commands == ()
    assert m.checkout_session_paid(session(metadata={"order": "x"})).note == "not_ours"
    assert m.checkout_session_paid(session(mode="subscription")).commands == ()


@pytest.mark.parametrize(
    "metadata",
    [
        {"credits_kind": "gift"},
        {**PACK.to_stripe(), "credits_account_id": "bad id with spaces"},
        {**PACK.to_stripe(), "credits_amount": "1.5"},
        {**PACK.to_stripe(), "credits_amount": "-3"},
        {**PACK.to_stripe(), "credits_pack": None},
    ],
)
def test_our_metadata_is_validated(metadata: dict[str, Any]) -> None:
    with pytest.raises(BadInput) as e:
        m.checkout_session_paid(session(metadata=metadata))
    assert e.value.code == "invalid_metadata"


def test_a_float_amount_is_refused() -> None:
    with pytest.raises(BadInput):
        m.checkout_session_paid(session(amount_total=5.99))


def test_a_top_up_payment_intent_settles_its_top_up() -> None:
    meta = PaymentMetadata("acct-1", "top_up", "api_calls", 500, top_up_id="tu-3")
    (command,) = m.payment_intent_succeeded(intent(meta, amount=500)).commands
    assert command["top_up_id"] == "tu-3"
    assert command["credit_type"] == "api_calls" and command["amount"] == 500
    parse_command(command)


def test_a_failed_top_up_fails_with_its_recovery_url_and_other_failures_do_nothing() -> None:
    meta = PaymentMetadata("acct-1", "top_up", "api_calls", 500, top_up_id="tu-3")
    failed = intent(
        meta,
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "message": "Your card was declined."},
    )
    (command,) = m.payment_intent_failed(failed, "https://checkout.stripe.test/c/pay/cs_9").commands
    assert command == {
        "type": "fail_top_up",
        "command_id": "stripe:pi_1:fail_top_up",
        "account_id": "acct-1",
        "top_up_id": "tu-3",
        "reason": "card_declined: Your card was declined.",
        "recovery_url": "https://checkout.stripe.test/c/pay/cs_9",
    }
    parse_command(command)
    assert m.payment_intent_failed(intent(), None).commands == ()


def test_a_paid_subscription_cycle_renews_the_period_its_line_starts() -> None:
    invoice = {
        "id": "in_1",
        "billing_reason": "subscription_cycle",
        "period_start": 1704067200,  # the previous period, as Stripe sends it
        "period_end": 1706745600,
        "lines": {"data": [{"period": {"start": 1706745600, "end": 1709251200}}]},
        "parent": {"subscription_details": {"metadata": {"credits_account_id": "acct-1"}}},
    }
    (command,) = m.invoice_paid(invoice).commands
    assert command == {
        "type": "renew",
        "command_id": "stripe:in_1:renew",
        "account_id": "acct-1",
        "period_id": "2024-02-01",
    }
    assert m.invoice_paid({**invoice, "billing_reason": "subscription_create"}).commands == ()


def test_subscription_changes_move_the_plan_and_an_ended_one_goes_to_the_cancel_plan() -> None:
    subscription = {
        "id": "sub_1",
        "status": "active",
        "metadata": {"credits_account_id": "acct-1", "credits_plan": "plus"},
    }
    (updated,) = m.subscription_changed(
        "evt_1", subscription, deleted=False, cancel_plan="free"
    ).commands
    assert (updated["plan"], updated["command_id"]) == ("plus", "stripe:evt_1:change_plan")
    (deleted,) = m.subscription_changed(
        "evt_2", {**subscription, "status": "canceled"}, deleted=True, cancel_plan="free"
    ).commands
    assert deleted["plan"] == "free"
    past_due = {**subscription, "status": "past_due"}
    assert (
        m.subscription_changed("evt_3", past_due, deleted=False, cancel_plan="free").commands == ()
    )


def test_a_dispute_revokes_all_left_or_its_share() -> None:
    whole = refunds.disputed(intent(), {"id": "dp_1", "amount": 599}).commands
    assert whole[1] == {
        "type": "revoke",
        "command_id": "stripe:dp_1:revoke",
        "account_id": "acct-1",
        "payment_reference": "pi_1",
        "reason": "chargeback",
    }
    part = refunds.disputed(intent(), {"id": "dp_2", "amount": 300}).commands
    assert part[1]["amount"] == 100


def _plus_ledger() -> Ledger:
    ledger = memory_ledger("seed_002_plus_credits.toml")
    ledger.ok("open_account", "acct-1", "open", plan="plus")
    return ledger


def test_a_dispute_revokes_its_share_in_the_ledger_and_a_duplicate_changes_nothing() -> None:
    ledger = _plus_ledger()
    ledger.apply(list(m.checkout_session_paid(session()).commands))
    disputed = list(refunds.disputed(intent(), {"id": "dp_3", "amount": 300}).commands)
    assert [r.status for r in ledger.apply(disputed)] == ["duplicate", "accepted"]
    assert [r.status for r in ledger.apply(disputed)] == ["duplicate", "duplicate"]
    # 300 of 599 cents disputed: floor(200 * 300 / 599) = 100 credits.
    assert ledger.available("credits", "acct-1") == 500 - 100


@pytest.mark.parametrize("value", [["pack"], {"kind": "pack"}, 3, True])
def test_metadata_and_statuses_of_any_json_type_are_refused_or_ignored_not_a_crash(value):
    # Found by the hostile-records test: a list as `credits_kind` made a set lookup raise.
    with pytest.raises(BadInput) as refused:
        md.payment_metadata({md.KIND: value})
    assert refused.value.code == DlqCode.INVALID_METADATA
    subscription = {"metadata": {md.ACCOUNT_ID: "acct-1"}, "status": value}
    outcome = m.subscription_changed("evt_1", subscription, deleted=False, cancel_plan="free")
    assert outcome.note == "status_None" and not outcome.commands
