"""The few Stripe API calls the payment side makes, returning plain dicts.

Bounded: one page of at most `MAX_CARDS` cards; every call has the client's timeout and the
SDK's bounded network retries. Each call is timed (`credits_stripe_request_seconds`, by
operation and outcome: ok, or the class of the error).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import stripe

from infra.metrics import STRIPE_SECONDS
from services.payments.metadata import ACCOUNT_ID
from services.payments.stripe_client import as_dict

MAX_CARDS = 100

T = TypeVar("T")


async def _timed(operation: str, call: Awaitable[T]) -> T:
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await call
    except Exception as error:
        # Error classes are a bounded set (the SDK's, and the network's).
        outcome = type(error).__name__
        raise
    finally:
        STRIPE_SECONDS.labels(operation, outcome).observe(time.perf_counter() - started)


class StripeApi:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    async def payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        intent = self._client.v1.payment_intents.retrieve_async(payment_intent_id)
        return as_dict(await _timed("retrieve_payment_intent", intent))

    async def charge(self, charge_id: str) -> dict[str, Any]:
        return as_dict(
            await _timed("retrieve_charge", self._client.v1.charges.retrieve_async(charge_id))
        )

    async def saved_payment_method(self, customer_id: str) -> str | None:
        """The card saved last on the customer (what the customer paid with most recently at
        Checkout, which saves it for off-session use); None when there is none."""
        customer = as_dict(
            await _timed("retrieve_customer", self._client.v1.customers.retrieve_async(customer_id))
        )
        if customer.get("deleted"):
            return None
        cards = await _timed(
            "list_payment_methods",
            self._client.v1.payment_methods.list_async(
                params={"customer": customer_id, "type": "card", "limit": MAX_CARDS}
            ),
        )
        # Stripe lists the newest first; `created` decides, the list order breaks ties.
        newest = sorted(enumerate(cards.data), key=lambda c: (-(c[1].created or 0), c[0]))
        return str(newest[0][1].id) if newest else None

    async def create_customer(self, account_id: str, idempotency_key: str) -> str:
        customer = await _timed(
            "create_customer",
            self._client.v1.customers.create_async(
                params={"metadata": {ACCOUNT_ID: account_id}},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return str(customer.id)

    async def refund(
        self, payment_intent_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        """Refunds what is left of the payment (an earlier partial refund stays as it is)."""
        refund = await _timed(
            "create_refund",
            self._client.v1.refunds.create_async(
                params={"payment_intent": payment_intent_id, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return as_dict(refund)

    async def charge_off_session(self, params: dict[str, Any], idempotency_key: str) -> str:
        intent = await _timed(
            "create_payment_intent",
            self._client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        return str(intent.id)

    async def checkout_session(self, params: dict[str, Any], idempotency_key: str | None) -> Any:
        options: Any = {"idempotency_key": idempotency_key} if idempotency_key else {}
        return await _timed(
            "create_checkout_session",
            self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options=options,
            ),
        )
