"""HTTP routes of the payment side (FastAPI): `POST /webhooks/stripe` and `POST /v1/checkout`.

The API app includes them (`services/api/app.py`): `PaymentRoutes(settings, checkout_access=...)`
then `app.include_router(routes.router)`, and `await routes.close()` at shutdown.

Webhook: the body is read up to `CREDITS_WEBHOOK_MAX_BODY_BYTES` (413 beyond, unread), the
signature verified over the raw bytes with the SDK (400 and nothing published when it is
missing, wrong or stale), and the verified event published to `stripe.events` keyed by its id
and acknowledged by the brokers (acks=all) before the 200. If Kafka does not acknowledge, 503:
Stripe retries, and the payment consumer dedupes by command id. No API key: the signature is
the authentication.

Checkout: who may start one is the API's decision (`checkout_access`, a FastAPI dependency
that returns a check of the account id); pricing is `services.payments.checkout`; the account's
plan comes from the read models (`services.payments.accounts`), never the ledger's event store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import stripe
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict

from domain.catalog import Catalog, load_catalog
from domain.errors import ErrorCode
from infra.kafka_clients import acknowledged_producer
from infra.settings import Settings, Topic
from infra.tracing import trace_headers
from services.api.body import read_body
from services.api.errors import RETRY_AFTER_SECONDS, HttpError
from services.api.models import ApiError
from services.payments import metrics
from services.payments.accounts import PlanOf, read_model_plan_of
from services.payments.checkout import (
    MAX_REQUEST_BYTES,
    CheckoutRefused,
    parse_checkout_request,
    price_checkout,
    session_params,
)
from services.payments.customers import checkout_customer_of
from services.payments.pool import PoolOf, acquire_timeout_seconds, close_pool, open_pool
from services.payments.signature import WebhookRefused, verify_stripe_event
from services.payments.stripe_client import build_stripe_client

log = structlog.get_logger("credits.payments.http")

CustomerOf = Callable[[str], Awaitable[str | None]]
# Raises (an HTTP error of the app) when the caller may not start a checkout for the account.
AccountCheck = Callable[[str], None]

_STATUS = {
    ErrorCode.invalid_command: 400,
    ErrorCode.unknown_account: 404,
    ErrorCode.unknown_plan: 409,
    ErrorCode.not_eligible: 403,
}


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookAccepted(_Shape):
    received: bool
    id: str
    type: str


class CheckoutSession(_Shape):
    id: str
    url: str | None
    account_id: str
    pack: str | None
    credit_type: str
    credits: int
    amount_cents: int
    currency: str


def payments_producer(settings: Settings) -> AIOKafkaProducer:
    """The producer the webhook route needs (started by the caller, or lazily by the routes)."""
    return acknowledged_producer(settings, "credits-webhooks")


class PaymentRoutes:
    def __init__(
        self,
        settings: Settings,
        *,
        checkout_access: Any,
        checkout_openapi_extra: dict[str, Any] | None = None,
        producer: AIOKafkaProducer | None = None,
        pool_of: PoolOf | None = None,
        plan_of: PlanOf | None = None,
        customer_of: CustomerOf | None = None,
        catalog: Catalog | None = None,
        stripe_client: stripe.StripeClient | None = None,
    ) -> None:
        """`checkout_access`: a FastAPI `Depends`/`Security` whose value is an `AccountCheck`.
        `producer`: a started producer for the webhook; by default one is started on first use
        (and again after a failed start) and stopped by `close`. `pool_of()`: the asyncpg pool
        checkout reads and writes through (the API passes its own); by default the routes open
        one (`services.payments.pool`) on first use and `close` closes it. `plan_of(account_id)`
        gives the account's plan (None: no such account); by default the read models say
        (`services.payments.accounts.read_model_plan_of`). `customer_of(account_id)` gives its
        Stripe customer (by default the linked one, else one created and linked now:
        `services.payments.customers.checkout_customer_of`)."""
        self.settings = settings
        self._secrets = settings.stripe_webhook_secret_list()
        if not self._secrets:
            log.warning("CREDITS_STRIPE_WEBHOOK_SECRETS is empty: every webhook will be refused")
        self._producer = producer
        self._owns_producer = producer is None
        self._producer_lock = asyncio.Lock()
        self._catalog = catalog
        self._client = stripe_client
        self._pool_of = pool_of or self._own_pool
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._plan_of = plan_of
        self._customer_of = customer_of
        self.router = self._build_router(checkout_access, checkout_openapi_extra or {})

    async def close(self) -> None:
        if self._owns_producer and self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await close_pool(pool)

    async def _own_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await open_pool(self.settings)
        return self._pool

    def _build_router(self, checkout_access: Any, checkout_extra: dict[str, Any]) -> APIRouter:
        router = APIRouter(tags=["payments"])
        error = {"model": ApiError}

        @router.post(
            "/webhooks/stripe",
            operation_id="stripeWebhook",
            summary="A Stripe event, signed (Stripe-Signature); published to stripe.events",
            response_model=WebhookAccepted,
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "description": "the Stripe event, exactly as Stripe signed it",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
            responses={
                400: {**error, "description": "signature missing, wrong or stale"},
                413: {**error, "description": "payload_too_large"},
                503: {**error, "description": "kafka_unavailable: Stripe retries"},
            },
        )
        async def webhook(request: Request) -> JSONResponse:
            return await self._webhook(request)

        @router.post(
            "/v1/checkout",
            operation_id="createCheckout",
            summary="A Stripe Checkout Session for a pack, or for an amount of a credit type",
            status_code=201,
            response_model=CheckoutSession,
            openapi_extra={
                **checkout_extra,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CheckoutRequest"}
                        }
                    },
                },
            },
            responses={
                400: {**error, "description": "invalid_command: a bad request, named"},
                401: {**error, "description": "no valid API key or portal token"},
                403: {**error, "description": "forbidden, or not_eligible for the plan"},
                404: {**error, "description": "unknown_account"},
                409: {**error, "description": "unknown_plan"},
                413: {**error, "description": "payload_too_large"},
                502: {**error, "description": "payment_provider_error: Stripe refused"},
                503: {**error, "description": "PostgreSQL does not answer (Retry-After)"},
            },
        )
        # A default, not `Annotated`: annotations are strings here, and this one is local.
        async def checkout(
            request: Request, may_act_for: AccountCheck = checkout_access
        ) -> JSONResponse:
            return await self._checkout(request, may_act_for)

        return router

    # ------------------------------------------------------------------ webhook

    async def _webhook(self, request: Request) -> JSONResponse:
        try:
            body = await read_body(request, self.settings.webhook_max_body_bytes)
        except HttpError as refused:
            metrics.WEBHOOKS.labels(
                outcome="too_large" if refused.status == 413 else "unread"
            ).inc()
            raise
        try:
            event = verify_stripe_event(
                body,
                request.headers.get("stripe-signature"),
                self._secrets,
                self.settings.stripe_webhook_tolerance_seconds,
            )
        except WebhookRefused as e:
            metrics.WEBHOOKS.labels(outcome=e.code.value).inc()
            log.warning("webhook refused", code=e.code.value, reason=e.message)
            return _error(400, e.code.value, e.message)
        timeout_seconds = self.settings.kafka_request_timeout_seconds * 2
        try:
            producer = await asyncio.wait_for(self._started_producer(), timeout=timeout_seconds)
            await asyncio.wait_for(
                producer.send_and_wait(
                    self.settings.topic(Topic.STRIPE_EVENTS),
                    value=body,
                    key=event["id"].encode(),
                    # The request's trace, for the payment consumer to go on with.
                    headers=list(trace_headers(trace.get_current_span())) or None,
                ),
                timeout=timeout_seconds,
            )
        except Exception as e:  # the event is not stored: Stripe must retry
            metrics.WEBHOOKS.labels(outcome="unavailable").inc()
            log.error("webhook not published", event_id=event["id"], error=f"{type(e).__name__}")
            return _error(
                503, "kafka_unavailable", "the event could not be stored; retry", retry=True
            )
        metrics.WEBHOOKS.labels(outcome="accepted").inc()
        return JSONResponse({"received": True, "id": event["id"], "type": event["type"]})

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._producer_lock:
            if self._producer is None:
                producer = payments_producer(self.settings)
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    # ------------------------------------------------------------------ checkout

    async def _checkout(self, request: Request, may_act_for: AccountCheck) -> JSONResponse:
        body = await read_body(request, MAX_REQUEST_BYTES)
        try:
            order_request = parse_checkout_request(body)
        except CheckoutRefused as e:
            return _error(_STATUS.get(e.code, 400), e.code.value, e.message)
        may_act_for(order_request.account_id)
        catalog, plan_of, client = self._checkout_parts()
        try:
            plan = await plan_of(order_request.account_id)
            if plan is None:
                raise CheckoutRefused(
                    ErrorCode.unknown_account, f"no account {order_request.account_id}"
                )
            order = price_checkout(catalog, plan, order_request)
        except CheckoutRefused as e:
            return _error(_STATUS.get(e.code, 400), e.code.value, e.message)
        account_id = order_request.account_id
        customer_id = await self._customer_of(account_id) if self._customer_of else None
        params = session_params(
            order,
            customer_id=customer_id,
            success_url=self.settings.checkout_success_url,
            cancel_url=self.settings.checkout_cancel_url,
        )
        try:
            session = await client.v1.checkout.sessions.create_async(params=params)  # type: ignore[arg-type]
        except stripe.StripeError as e:
            log.error("checkout session refused", error=str(e), account_id=order.meta.account_id)
            return _error(
                502, "payment_provider_error", e.user_message or "Stripe refused the session"
            )
        created = CheckoutSession(
            id=session.id,
            url=session.url,
            account_id=order.meta.account_id,
            pack=order.meta.pack,
            credit_type=order.meta.credit_type,
            credits=order.meta.credits,
            amount_cents=order.amount_cents,
            currency=order.currency,
        )
        return JSONResponse(created.model_dump(mode="json"), status_code=201)

    def _checkout_parts(self) -> tuple[Catalog, PlanOf, stripe.StripeClient]:
        if self._catalog is None:
            self._catalog = load_catalog(self.settings.catalog_path)
        if self._client is None:
            self._client = build_stripe_client(self.settings)
        wait_seconds = acquire_timeout_seconds(self.settings)
        if self._plan_of is None:
            self._plan_of = read_model_plan_of(self._pool_of, acquire_timeout_seconds=wait_seconds)
        if self._customer_of is None:
            self._customer_of = checkout_customer_of(
                self._pool_of, self._client, acquire_timeout_seconds=wait_seconds
            )
        return self._catalog, self._plan_of, self._client


def _error(status: int, code: str, message: str, *, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if retry else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )
