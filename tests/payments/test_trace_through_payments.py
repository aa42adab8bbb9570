"""A Stripe event's trace goes on through the payment consumer to the commands it sends: the
webhook publishes the request's `traceparent` with the event on stripe.events, and each command
the consumer sends for it carries a traceparent of the same trace."""

from __future__ import annotations

import json
import uuid

import pytest

from infra.kafka_clients import acknowledged_producer
from infra.settings import Settings, Topic
from services.payments.metadata import PaymentMetadata
from tests.payments.conftest import read_topic, stripe_event

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("payments_running")]


async def test_the_commands_for_a_traced_stripe_event_carry_its_trace(
    payment_settings: Settings,
) -> None:
    account = f"traced-{uuid.uuid4().hex[:12]}"
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200")
    session = {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": f"pi_{uuid.uuid4().hex[:14]}",
        "amount_total": 599,
        "currency": "usd",
        "customer": None,
        "metadata": meta.to_stripe(),
    }
    event = stripe_event("checkout.session.completed", session, f"evt_{uuid.uuid4().hex}")
    producer = acknowledged_producer(payment_settings, "trace-test")
    await producer.start()
    try:
        await producer.send_and_wait(
            payment_settings.topic(Topic.STRIPE_EVENTS),
            value=json.dumps(event).encode(),
            key=event["id"].encode(),
            headers=[("traceparent", traceparent.encode())],
        )
    finally:
        await producer.stop()

    found = await read_topic(
        payment_settings, Topic.COMMANDS, lambda c: c.get("account_id") == account, 1
    )
    assert len(found) == 1
    _, command, headers = found[0]
    assert command["type"] == "purchase"
    sent = headers["traceparent"].decode()
    # Without an SDK the consumer passes the trace on as it came; with one, from its own span.
    assert sent.split("-")[1] == trace_id
