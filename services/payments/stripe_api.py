"""The few Stripe API calls the payment side makes, returning plain dicts.

Bounded: one page of at most 100 refunds per call and at most `MAX_REFUND_PAGES` pages; every
call has the client's timeout and the SDK's bounded network retries.
"""

from __future__ import annotations

from typing import Any

import stripe

from services.payments.stripe_client import as_dict

MAX_REFUND_PAGES = 10
PAGE_SIZE = 100


class StripeApi:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    async def payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return as_dict(await self._client.v1.payment_intents.retrieve_async(payment_intent_id))

    async def charge(self, charge_id: str) -> dict[str, Any]:
        return as_dict(await self._client.v1.charges.retrieve_async(charge_id))

    async def refunds_of(self, charge_id: str) -> list[dict[str, Any]]:
        refunds: list[dict[str, Any]] = []
        params: dict[str, Any] = {"charge": charge_id, "limit": PAGE_SIZE}
        for _ in range(MAX_REFUND_PAGES):
            page = await self._client.v1.refunds.list_async(params=params)  # type: ignore[arg-type]
            refunds.extend(as_dict(r) for r in page.data)
            if not page.has_more or not page.data:
                return refunds
            params["starting_after"] = page.data[-1].id
        raise stripe.APIError(f"more than {MAX_REFUND_PAGES * PAGE_SIZE} refunds on {charge_id}")

    async def saved_payment_method(self, customer_id: str) -> str | None:
        """The customer's default payment method, else its first saved card."""
        customer = as_dict(await self._client.v1.customers.retrieve_async(customer_id))
        if customer.get("deleted"):
            return None
        settings = customer.get("invoice_settings") or {}
        default = settings.get("default_payment_method")
        if isinstance(default, dict):
            default = default.get("id")
        if isinstance(default, str) and default:
            return default
        cards = await self._client.v1.payment_methods.list_async(
            params={"customer": customer_id, "type": "card", "limit": 1}
        )
        return cards.data[0].id if cards.data else None

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
