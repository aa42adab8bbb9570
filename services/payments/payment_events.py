"""Integration events of the payment side on `credits.events` (CloudEvents 1.0, structured JSON,
the relay's envelope and `content-type` header, keyed by account id). Pure.

`credits.payment_refunded`: the ledger refused a paid purchase or top-up, and the payment was
refunded at Stripe. Its `source` is `credits/payments` (the relay's events are `credits`), its
`id` `payment_refunded:<payment reference>`, one per payment: a redelivery publishes the same
event again, and consumers dedupe by `id` as for every event. It has no `sequence` (it is not
a fact of the account's stream).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from services.payments.purchases import Payment

SOURCE = "credits/payments"
PAYMENT_REFUNDED = "credits.payment_refunded"


class PaymentRefundedData(BaseModel):
    """`data` of `credits.payment_refunded`: the purchase as sent, the ledger's refusal, the
    refund. Money in minor units of `currency`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    payment_reference: str
    command_id: str
    pack: str | None
    credit_type: str | None
    amount: int | None
    top_up_id: str | None
    amount_paid: int
    currency: str
    refusal_code: str
    refusal_message: str
    refund_id: str
    refund_cents: int


def payment_refunded(payment: Payment) -> dict[str, Any]:
    assert payment.refunded_at is not None and payment.refund_id is not None
    purchase = payment.command
    data = PaymentRefundedData(
        payment_reference=payment.payment_reference,
        command_id=payment.command_id,
        pack=purchase.get("pack"),
        credit_type=purchase.get("credit_type"),
        amount=purchase.get("amount"),
        top_up_id=purchase.get("top_up_id"),
        amount_paid=purchase["amount_paid"],
        currency=purchase["currency"],
        refusal_code=payment.refusal_code or "",
        refusal_message=payment.refusal_message or "",
        refund_id=payment.refund_id,
        refund_cents=payment.refund_cents or 0,
    )
    return {
        "specversion": "1.0",
        "id": f"payment_refunded:{payment.payment_reference}",
        "source": SOURCE,
        "type": PAYMENT_REFUNDED,
        "subject": payment.account_id,
        "time": payment.refunded_at.isoformat(),
        "datacontenttype": "application/json",
        "data": data.model_dump(),
    }
