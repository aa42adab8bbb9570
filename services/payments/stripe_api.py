"""The few Stripe API calls the payment side makes, returning plain dicts.

Bounded: one page of at most `MAX_CARDS` cards; every call has the client's timeout and the
SDK's bounded network retries.
"""

from __future__ import annotations

from typing import Any

import stripe

from services.payments.metadata import ACCOUNT_ID
from services.payments.stripe_client import as_dict

MAX_CARDS = 100


class StripeApi:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    async def payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return as_dict(await self._client.v1.payment_intents.retrieve_async(payment_intent_id))

    async def charge(self, charge_id: str) -> dict[str, Any]:
        return as_dict(await self._client.v1.charges.retrieve_async(charge_id))

    async def saved_payment_method(self, customer_id: str) -> str | None:
        """The card saved last on the customer (what the customer paid with most recently at
        Checkout, which saves it for off-session use); None when there is none."""
        customer = as_dict(await self._client.v1.customers.retrieve_async(customer_id))
        if customer.get("deleted"):
            return None
        cards = await self._client.v1.payment_methods.list_async(
            params={"customer": customer_id, "type": "card", "limit": MAX_CARDS}
        )
        # Stripe lists the newest first; `created` decides, the list order breaks ties.
        newest = sorted(enumerate(cards.data), key=lambda c: (-(c[1].created or 0), c[0]))
        return str(newest[0][1].id) if newest else None

    async def create_customer(self, account_id: str, idempotency_key: str) -> str:
        customer = await self._client.v1.customers.create_async(
            params={"metadata": {ACCOUNT_ID: account_id}},
            options={"idempotency_key": idempotency_key},
        )
        return str(customer.id)

    async def refund(
        self, payment_intent_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        """Refunds what is left of the payment (an earlier partial refund stays as it is)."""
        refund = await self._client.v1.refunds.create_async(
            params={"payment_intent": payment_intent_id, "metadata": metadata},
            options={"idempotency_key": idempotency_key},
        )
        return as_dict(refund)

    async def charge_off_session(self, params: dict[str, Any], idempotency_key: str) -> str:
        intent = await self._client.v1.payment_intents.create_async(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": idempotency_key},
        )
        return str(intent.id)

    async def checkout_session(self, params: dict[str, Any], idempotency_key: str | None) -> Any:
        options: Any = {"idempotency_key": idempotency_key} if idempotency_key else {}
        return await self._client.v1.checkout.sessions.create_async(
            params=params,  # type: ignore[arg-type]
            options=options,
        )
