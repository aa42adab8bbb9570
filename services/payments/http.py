"""HTTP routes of the payment side: `POST /webhooks/stripe` and `POST /v1/checkout`.

Mount them in the API app: `Starlette(routes=[..., *payment_routes(settings, producer)])`,
with `producer` a started `AIOKafkaProducer` (see `payments_producer`).

Webhook: the body is read up to `CREDITS_WEBHOOK_MAX_BODY_BYTES` (413 beyond, unread), the
signature verified over the raw bytes with the SDK (400 and nothing published when it is
missing, wrong or stale), and the verified event published to `stripe.events` keyed by its id
and acknowledged by the brokers (acks=all) before the 200. If Kafka does not acknowledge, 503:
Stripe retries, and the payment consumer dedupes by command id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import stripe
import structlog
from aiokafka import AIOKafkaProducer
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from domain.catalog import Catalog, load_catalog
from domain.errors import ErrorCode
from infra.kafka_clients import acknowledged_producer
from infra.settings import Settings, Topic
from services.payments import metrics
from services.payments.checkout import (
    CheckoutRefused,
    parse_checkout_request,
    price_checkout,
    session_params,
)
from services.payments.signature import WebhookRefused, verify_stripe_event
from services.payments.stripe_client import build_stripe_client

log = structlog.get_logger("credits.payments.http")

PlanOf = Callable[[str], Awaitable[str | None]]
CustomerOf = Callable[[str], Awaitable[str | None]]

_STATUS = {
    ErrorCode.invalid_command: 400,
    ErrorCode.unknown_account: 404,
    ErrorCode.unknown_plan: 409,
    ErrorCode.not_eligible: 403,
}


class _TooLarge(Exception):
    pass


def payments_producer(settings: Settings) -> AIOKafkaProducer:
    """The producer the webhook route needs (start it in the app's lifespan)."""
    return acknowledged_producer(settings, "credits-webhooks")


def payment_routes(
    settings: Settings,
    producer: AIOKafkaProducer,
    *,
    plan_of: PlanOf | None = None,
    customer_of: CustomerOf | None = None,
    catalog: Catalog | None = None,
    stripe_client: stripe.StripeClient | None = None,
) -> list[Route]:
    """`plan_of(account_id)` gives the account's plan (None: no such account); by default the
    ledger application loads the account (`services.payments.accounts.ledger_plan_of`).
    `customer_of(account_id)` gives its Stripe customer (by default the linked one, else one
    created and linked now: `services.payments.customers.checkout_customer_of`)."""
    secrets = settings.stripe_webhook_secret_list()
    if not secrets:
        log.warning("CREDITS_STRIPE_WEBHOOK_SECRETS is empty: every webhook will be refused")
    webhook = partial(_webhook, settings, secrets, producer)
    state: dict[str, Any] = {
        "catalog": catalog,
        "client": stripe_client,
        "plan_of": plan_of,
        "customer_of": customer_of,
    }

    async def checkout(request: Request) -> JSONResponse:
        if state["catalog"] is None:
            state["catalog"] = load_catalog(settings.catalog_path)
        if state["client"] is None:
            state["client"] = build_stripe_client(settings)
        if state["plan_of"] is None:
            from services.payments.accounts import ledger_plan_of

            state["plan_of"] = ledger_plan_of(settings)
        if state["customer_of"] is None:
            from services.payments.customers import checkout_customer_of

            state["customer_of"] = checkout_customer_of(settings, state["client"])
        return await _checkout(
            settings,
            state["catalog"],
            state["plan_of"],
            state["customer_of"],
            state["client"],
            request,
        )

    return [
        Route("/webhooks/stripe", webhook, methods=["POST"]),
        Route("/v1/checkout", checkout, methods=["POST"]),
    ]


async def _webhook(
    settings: Settings, secrets: list[str], producer: AIOKafkaProducer, request: Request
) -> JSONResponse:
    limit = settings.webhook_max_body_bytes
    try:
        body = await _read_body(request, limit)
    except _TooLarge:
        metrics.WEBHOOKS.labels(outcome="too_large").inc()
        return _error(413, "payload_too_large", f"the body is over {limit} bytes")
    except ClientDisconnect:
        return _error(400, "client_disconnected", "the body did not arrive")
    try:
        event = verify_stripe_event(
            body,
            request.headers.get("stripe-signature"),
            secrets,
            settings.stripe_webhook_tolerance_seconds,
        )
    except WebhookRefused as e:
        metrics.WEBHOOKS.labels(outcome=e.code.value).inc()
        log.warning("webhook refused", code=e.code.value, reason=e.message)
        return _error(400, e.code.value, e.message)
    try:
        await asyncio.wait_for(
            producer.send_and_wait(
                settings.topic(Topic.STRIPE_EVENTS), value=body, key=event["id"].encode()
            ),
            timeout=settings.kafka_request_timeout_seconds * 2,
        )
    except Exception as e:  # the event is not stored: Stripe must retry
        metrics.WEBHOOKS.labels(outcome="unavailable").inc()
        log.error("webhook not published", event_id=event["id"], error=f"{type(e).__name__}")
        return _error(503, "kafka_unavailable", "the event could not be stored; retry")
    metrics.WEBHOOKS.labels(outcome="accepted").inc()
    return JSONResponse({"received": True, "id": event["id"], "type": event["type"]})


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _checkout(
    settings: Settings,
    catalog: Catalog,
    plan_of: PlanOf,
    customer_of: CustomerOf | None,
    client: stripe.StripeClient,
    request: Request,
) -> JSONResponse:
    try:
        body = await _read_body(request, 4096)
    except _TooLarge:
        return _error(413, "payload_too_large", "the body is over 4096 bytes")
    try:
        order_request = parse_checkout_request(body)
        plan = await plan_of(order_request.account_id)
        if plan is None:
            raise CheckoutRefused(
                ErrorCode.unknown_account, f"no account {order_request.account_id}"
            )
        order = price_checkout(catalog, plan, order_request)
    except CheckoutRefused as e:
        return _error(_STATUS.get(e.code, 400), e.code.value, e.message)
    customer_id = await customer_of(order_request.account_id) if customer_of else None
    params = session_params(
        order,
        customer_id=customer_id,
        success_url=settings.checkout_success_url,
        cancel_url=settings.checkout_cancel_url,
    )
    try:
        session = await client.v1.checkout.sessions.create_async(params=params)  # type: ignore[arg-type]
    except stripe.StripeError as e:
        log.error("checkout session refused", error=str(e), account_id=order.meta.account_id)
        return _error(502, "payment_provider_error", e.user_message or "Stripe refused the session")
    return JSONResponse(
        {
            "id": session.id,
            "url": session.url,
            "account_id": order.meta.account_id,
            "pack": order.meta.pack,
            "credit_type": order.meta.credit_type,
            "credits": order.meta.credits,
            "amount_cents": order.amount_cents,
            "currency": order.currency,
        },
        status_code=201,
    )


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
