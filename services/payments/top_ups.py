"""`credits.top_up_requested` → an off-session charge of the account's saved card.

The PaymentIntent carries the top-up in its metadata and the request's `idempotency_key`
(`<account>:<top_up_id>`) as its Stripe idempotency key, so a redelivered request never
charges twice (Stripe keeps keys for 24 hours). Credits come only from the webhook:
`payment_intent.succeeded` → `purchase` with `top_up_id`; a decline →
`payment_intent.payment_failed` → `fail_top_up` with a recovery Checkout Session. With no
saved card there is nothing to charge:
`fail_top_up` at once, with the recovery session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe

from infra.dlq import DlqCode
from services.payments import metadata as md
from services.payments.checkout import CheckoutOrder, session_params
from services.payments.errors import BadInput
from services.payments.mapping import Command, Outcome
from services.payments.metadata import PaymentMetadata
from services.payments.stripe_objects import MAX_CENTS, cents, currency

TOP_UP_REQUESTED = "credits.top_up_requested"
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:@-]{1,255}")


@dataclass(frozen=True)
class TopUpRequest:
    meta: PaymentMetadata
    price_cents: int
    currency: str
    idempotency_key: str


def top_up_request(cloud_event: Mapping[str, Any]) -> TopUpRequest | None:
    """The top-up a CloudEvent asks for; None for every other event type."""
    if cloud_event.get("type") != TOP_UP_REQUESTED:
        return None
    data = cloud_event.get("data")
    if not isinstance(data, Mapping):
        raise BadInput(DlqCode.INVALID_CLOUD_EVENT, "data: not an object")
    try:
        account_id = md.identifier(cloud_event.get("subject"), "subject")
        meta = PaymentMetadata(
            account_id,
            "top_up",
            md.name(data.get("credit_type"), "credit_type"),
            _credits(data.get("amount")),
            top_up_id=md.identifier(data.get("top_up_id"), "top_up_id"),
        )
        key = data.get("idempotency_key")
        # It becomes an HTTP header of the Stripe request: nothing but id characters.
        if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
            raise BadInput(DlqCode.INVALID_CLOUD_EVENT, "idempotency_key: missing or not an id")
        price = cents(data, "price_cents")
        code = currency(data)
    except BadInput as e:
        raise BadInput(DlqCode.INVALID_CLOUD_EVENT, e.message) from None
    if price < 1:
        raise BadInput(DlqCode.INVALID_CLOUD_EVENT, "price_cents: must be positive")
    return TopUpRequest(meta, price, code, key)


def off_session_params(
    request: TopUpRequest, customer_id: str, payment_method_id: str
) -> dict[str, Any]:
    return {
        "amount": request.price_cents,
        "currency": request.currency,
        "customer": customer_id,
        "payment_method": payment_method_id,
        "confirm": True,
        "off_session": True,
        "metadata": request.meta.to_stripe(),
    }


def recovery_params(
    meta: PaymentMetadata,
    amount_cents: int,
    currency_code: str,
    customer_id: str | None,
    *,
    success_url: str,
    cancel_url: str,
) -> dict[str, Any]:
    """A Checkout Session to pay for the same top-up by hand (with a new card)."""
    order = CheckoutOrder(
        meta, amount_cents, currency_code, f"{meta.credits} {meta.credit_type} (top-up)"
    )
    return session_params(
        order, customer_id=customer_id, success_url=success_url, cancel_url=cancel_url
    )


def not_charged(request: TopUpRequest, reason: str, recovery_url: str | None) -> Outcome:
    """No charge was possible (no saved card, refused request): the top-up fails now."""
    command: Command = {
        "type": "fail_top_up",
        # Receipts are per account, so the top-up id is unique enough.
        "command_id": f"payments:{request.meta.top_up_id}:fail_top_up",
        "account_id": request.meta.account_id,
        "top_up_id": request.meta.top_up_id,
        "reason": reason[:256],
    }
    if recovery_url is not None:
        command["recovery_url"] = recovery_url
    return Outcome(commands=(command,))


def request_refusal(error: stripe.StripeError) -> str:
    code = getattr(error, "code", None) or type(error).__name__
    return f"{code}: {error.user_message or 'the payment could not be attempted'}"


def _credits(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CENTS:
        raise BadInput(DlqCode.INVALID_CLOUD_EVENT, "amount: not a positive integer")
    return value
