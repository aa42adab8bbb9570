"""One message in, an `Outcome` out: Stripe events and top-up requests, with their Stripe reads.

The decisions are the pure functions of `mapping`, `refunds` and `top_ups`; this module only
fetches what they need (the PaymentIntent behind a refund, the refund list, the saved card) and
makes the calls that have effects at Stripe (the off-session charge, recovery Checkout
Sessions). It never writes to Kafka: the consumer does, and commits after the broker's ack.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
import structlog

from infra.dlq import DlqCode
from services.payments import mapping as m
from services.payments import refunds
from services.payments.customers import Customers
from services.payments.errors import BadInput
from services.payments.mapping import Outcome
from services.payments.metadata import PaymentMetadata
from services.payments.purchases import REFUSED, PostgresPurchases
from services.payments.stripe_api import StripeApi
from services.payments.stripe_objects import cents, currency, id_of, mapping, text
from services.payments.top_ups import (
    TopUpRequest,
    not_charged,
    off_session_params,
    recovery_params,
    request_refusal,
    top_up_request,
)

log = structlog.get_logger("credits.payments")

HANDLED_STRIPE_EVENTS: frozenset[str] = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "invoice.paid",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "charge.refunded",
        "charge.dispute.created",
        "customer.created",
        "customer.updated",
        "customer.deleted",
    }
)
# Stripe keeps idempotency keys for 24 hours: an older top-up request is not charged (its key
# would no longer protect against a second charge); it fails, and the customer can pay by hand.
MAX_TOP_UP_AGE = timedelta(hours=23)
MAX_URL_CHARS = 2048


class PaymentHandler:
    def __init__(
        self,
        api: StripeApi,
        customers: Customers,
        purchases: PostgresPurchases,
        *,
        cancel_plan: str,
        success_url: str,
        cancel_url: str,
    ) -> None:
        self.api = api
        self.customers = customers
        self.purchases = purchases
        self.cancel_plan = cancel_plan
        self.success_url = success_url
        self.cancel_url = cancel_url

    async def stripe_event(self, event: Mapping[str, Any]) -> Outcome:
        event_type = text(event, "type")
        if event_type not in HANDLED_STRIPE_EVENTS:
            return Outcome(note="unhandled_type")
        obj = mapping(mapping(event.get("data"), "data").get("object"), "data.object")
        outcome = await self._decide(text(event, "id"), event_type, obj)
        await self._apply_links(outcome)
        return outcome

    async def _decide(self, event_id: str, event_type: str, obj: Mapping[str, Any]) -> Outcome:
        if event_type.startswith("checkout.session."):
            return m.checkout_session_paid(obj)
        if event_type == "payment_intent.succeeded":
            return m.payment_intent_succeeded(obj)
        if event_type == "payment_intent.payment_failed":
            meta = m.top_up_of(obj)
            if meta is None:
                return Outcome(note="not_a_top_up")
            url = await self._recovery_url(
                meta,
                cents(obj, "amount"),
                currency(obj),
                id_of(obj.get("customer")),
                key=f"credits-recovery:{text(obj, 'id')}",
            )
            return m.payment_intent_failed(obj, url)
        if event_type == "invoice.paid":
            return m.invoice_paid(obj)
        if event_type.startswith("customer.subscription."):
            return m.subscription_changed(
                event_id, obj, deleted=event_type.endswith(".deleted"), cancel_plan=self.cancel_plan
            )
        if event_type == "charge.refunded":
            intent_id = id_of(obj.get("payment_intent"))
            if intent_id is None:
                return Outcome(note="not_ours")
            refunded = refunds.refunded(await self._payment_intent(intent_id), obj)
            if refunded is None:
                return Outcome(note="not_ours")
            plan = await self.purchases.plan_refund(refunded)
            if plan.state in REFUSED:
                return Outcome(note="refused_payment")
            return Outcome(commands=(refunded.purchase, *plan.revokes))
        if event_type == "charge.dispute.created":
            intent_id = id_of(obj.get("payment_intent"))
            charge_id = id_of(obj.get("charge"))
            if intent_id is None and charge_id is not None:
                intent_id = id_of((await self.api.charge(charge_id)).get("payment_intent"))
            if intent_id is None:
                return Outcome(note="not_ours")
            return refunds.disputed(await self._payment_intent(intent_id), obj)
        assert event_type.startswith("customer."), event_type
        return m.customer_changed(obj, deleted=event_type == "customer.deleted")

    async def cloud_event(self, cloud_event: Mapping[str, Any], now: datetime) -> Outcome:
        request = top_up_request(cloud_event)
        if request is None:
            return Outcome(note="not_a_top_up_request")
        requested_at = _time(cloud_event.get("time"))
        if requested_at is not None and now - requested_at > MAX_TOP_UP_AGE:
            return not_charged(request, "expired: requested too long ago to charge", None)
        return await self.charge_top_up(request)

    async def charge_top_up(self, request: TopUpRequest) -> Outcome:
        customer_id = await self.customers.customer_of(request.meta.account_id)
        method = await self.api.saved_payment_method(customer_id) if customer_id else None
        if customer_id is None or method is None:
            return await self._not_charged(
                request, customer_id, "no_saved_payment_method: no card on file"
            )
        params = off_session_params(request, customer_id, method)
        try:
            intent_id = await self.api.charge_off_session(params, request.idempotency_key)
        except stripe.CardError as e:
            # Declined: Stripe sends payment_intent.payment_failed, which fails the top-up.
            log.info("top-up declined", top_up_id=request.meta.top_up_id, code=e.code)
            return Outcome(note="declined")
        except stripe.IdempotencyError:
            return Outcome(note="already_charged")
        except stripe.InvalidRequestError as e:
            return await self._not_charged(request, customer_id, request_refusal(e))
        log.info("top-up charged", top_up_id=request.meta.top_up_id, payment_intent=intent_id)
        return Outcome(note="charged")

    async def _not_charged(
        self, request: TopUpRequest, customer_id: str | None, reason: str
    ) -> Outcome:
        url = await self._recovery_url(
            request.meta,
            request.price_cents,
            request.currency,
            customer_id,
            key=f"credits-recovery:{request.idempotency_key}",
        )
        return not_charged(request, reason, url)

    async def _payment_intent(self, intent_id: str) -> dict[str, Any]:
        try:
            return await self.api.payment_intent(intent_id)
        except stripe.InvalidRequestError as e:
            raise BadInput(
                DlqCode.INVALID_STRIPE_EVENT, f"payment intent {intent_id}: {e.user_message}"
            ) from None

    async def _recovery_url(
        self,
        meta: PaymentMetadata,
        amount_cents: int,
        currency_code: str,
        customer_id: str | None,
        *,
        key: str,
    ) -> str | None:
        """A Checkout Session for the failed top-up; None (the catalog's URL) if refused.

        The idempotency key makes a retry get the same session, hence the same command.
        """
        params = recovery_params(
            meta,
            amount_cents,
            currency_code,
            customer_id,
            success_url=self.success_url,
            cancel_url=self.cancel_url,
        )
        try:
            session = await self.api.checkout_session(params, key)
        except (stripe.InvalidRequestError, stripe.PermissionError) as e:
            log.warning("no recovery checkout session", error=str(e), top_up_id=meta.top_up_id)
            return None
        url = getattr(session, "url", None)
        if not isinstance(url, str) or len(url) > MAX_URL_CHARS or not url.isprintable():
            return None
        return url if url.startswith(("https://", "http://")) else None

    async def _apply_links(self, outcome: Outcome) -> None:
        if outcome.link is not None:
            await self.customers.link(*outcome.link)
        if outcome.unlink is not None:
            await self.customers.unlink(outcome.unlink)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
