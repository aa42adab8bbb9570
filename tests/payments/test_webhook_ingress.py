"""POST /webhooks/stripe on a real server and real Kafka: verified events are published before
the 2xx; bad, stale, unsigned and oversized ones get 4xx and publish nothing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from infra.settings import Settings, Topic
from tests.payments.conftest import OLD_SECRET, read_topic, signed, stripe_event

pytestmark = pytest.mark.integration


def _event(event_id: str) -> dict[str, object]:
    return stripe_event("customer.created", {"id": "cus_x", "metadata": {}}, event_id)


async def test_a_verified_event_is_on_stripe_events_keyed_by_its_id_before_the_answer(
    webhook_url: str, payment_settings: Settings
) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    body, header = signed(_event(event_id), secret=OLD_SECRET)  # the secret being rotated out
    async with httpx.AsyncClient() as client:
        response = await client.post(
            webhook_url, content=body, headers={"Stripe-Signature": header}
        )
    assert response.status_code == 200, response.text
    # Already acknowledged by Kafka when the 200 left: readable at once.
    found = await read_topic(
        payment_settings, Topic.STRIPE_EVENTS, lambda e: e.get("id") == event_id, 1, 5.0
    )
    assert len(found) == 1
    key, value, _ = found[0]
    assert key == event_id.encode()
    assert value == json.loads(body)


async def test_bad_stale_and_unsigned_webhooks_get_400_and_publish_nothing(
    webhook_url: str, payment_settings: Settings
) -> None:
    ids = {name: f"evt_{name}_{uuid.uuid4().hex}" for name in ("bad", "stale", "unsigned", "big")}
    bad_body, _ = signed(_event(ids["bad"]))
    _, someone_elses = signed(_event(ids["bad"]), secret="whsec_not_ours")
    stale_body, stale = signed(_event(ids["stale"]), at=time.time() - 3600)
    unsigned_body, _ = signed(_event(ids["unsigned"]))
    big = _event(ids["big"]) | {"padding": "x" * payment_settings.webhook_max_body_bytes}
    big_body, big_header = signed(big)
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(
            client.post(webhook_url, content=bad_body, headers={"Stripe-Signature": someone_elses}),
            client.post(webhook_url, content=stale_body, headers={"Stripe-Signature": stale}),
            client.post(webhook_url, content=unsigned_body),
            client.post(webhook_url, content=big_body, headers={"Stripe-Signature": big_header}),
        )
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (400, "signature_invalid"),
        (400, "signature_expired"),
        (400, "signature_missing"),
        (413, "payload_too_large"),
    ]
    published = await read_topic(
        payment_settings,
        Topic.STRIPE_EVENTS,
        lambda e: e.get("id") in ids.values(),
        count=1,
        timeout_seconds=3.0,
    )
    assert published == []
