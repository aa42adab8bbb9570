"""Fixtures for the payment side: a fake Stripe (localstripe + additions), the webhook endpoint
served by uvicorn on a free port, the payment consumer running against this run's topics, and
an in-memory ledger that applies the commands read back from `credits.commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
import uvicorn
from aiokafka import AIOKafkaProducer, TopicPartition
from fastapi import Depends, FastAPI

from domain.account import Account
from infra.kafka_clients import consumer as kafka_consumer
from infra.settings import Settings, Topic
from services.api.errors import install_error_handlers
from services.payments.consumer import run_payments
from services.payments.customers import PostgresCustomers
from services.payments.http import PaymentRoutes, payments_producer
from services.relay.cloud_events import cloud_event
from tests.databases import fresh_database
from tests.kafka_client import created_topics
from tests.kit.clock import SettableClock
from tests.kit.ledger import Ledger
from tests.kit.ports import free_port
from tests.kit.stripe_fake import FakeStripe

CATALOGS = Path(__file__).resolve().parents[2] / "domain" / "catalogs"
OLD_SECRET = "whsec_old_test_secret"
NEW_SECRET = "whsec_new_test_secret"
WAIT_SECONDS = 20.0


def memory_ledger(catalog: str) -> Ledger:
    """The in-memory ledger (tests/kit/ledger.py) that applies the commands read back from
    `credits.commands`, its clock at the present: Stripe's events carry real times."""
    return Ledger(catalog, SettableClock(datetime.now(UTC)))


def new_cloud_events(ledger: Ledger, account: str) -> list[dict[str, Any]]:
    """What the relay would publish for the events stored since the last call."""
    return [cloud_event(e) for e in ledger.new_events(account) if isinstance(e, Account.Event)]


def signed(
    event: dict[str, Any], secret: str = NEW_SECRET, at: float | None = None
) -> tuple[bytes, str]:
    """A webhook body and its Stripe-Signature, made with the SDK's own helper."""
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=int(at if at is not None else time.time())
    )
    return body.encode(), header


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


async def read_topic(
    settings: Settings,
    topic: Topic,
    match: Callable[[dict[str, Any]], bool],
    count: int,
    timeout_seconds: float = WAIT_SECONDS,
    settle_seconds: float = 0.0,
) -> list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]]:
    """(key, JSON value, headers) of the messages of `topic` that match, from the beginning;
    returns once `count` matched (and `settle_seconds` more passed), or at the timeout."""
    name = settings.topic(topic)
    consumer = kafka_consumer(settings, client_id="credits-tests", group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(name) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(name) or set()
        assignment = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        found: list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]] = []
        deadline = time.monotonic() + timeout_seconds
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batch.values():
                for r in records:
                    try:
                        value = json.loads(r.value or b"")
                    except (ValueError, RecursionError):
                        value = {"_raw": (r.value or b"").decode(errors="replace")}
                    if isinstance(value, dict) and match(value):
                        found.append((r.key, value, dict(r.headers)))
            if len(found) >= count and settle_until is None:
                settle_until = time.monotonic() + settle_seconds
        return found
    finally:
        await consumer.stop()


async def commands_for(
    settings: Settings, account_id: str, count: int, **kwargs: Any
) -> list[dict[str, Any]]:
    found = await read_topic(
        settings, Topic.COMMANDS, lambda c: c.get("account_id") == account_id, count, **kwargs
    )
    return [value for _, value, _ in found]


@pytest.fixture(scope="session")
def fake_stripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeStripe]:
    fake = FakeStripe().start(tmp_path_factory.mktemp("stripe") / "fake_stripe.log")
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def payment_settings(settings: Settings, fake_stripe: FakeStripe) -> Settings:
    """This run's settings with topics and a database of their own: the payment tests run a
    ledger, a relay and the payment consumer that must not act on other tests' accounts."""
    return settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}payments.",
            "pg_database": f"{settings.pg_database}_payments",
            "stripe_api_key": "sk_test_payments",
            "stripe_api_base": fake_stripe.api_base,
            # Rotation: the old and the new secret are both accepted.
            "stripe_webhook_secrets": f"{OLD_SECRET},{NEW_SECRET}",
            "catalog_path": CATALOGS / "seed_002_plus_credits.toml",
            "checkout_success_url": "https://shop.example/credits?paid=1",
            "checkout_cancel_url": "https://shop.example/credits",
        }
    )


@pytest.fixture(scope="session")
async def payment_topics(payment_settings: Settings) -> AsyncIterator[list[str]]:
    async with created_topics(payment_settings) as names:
        yield names


@pytest.fixture(scope="session")
def payment_database(base_settings: Settings, payment_settings: Settings) -> Iterator[str]:
    with fresh_database(base_settings, payment_settings.pg_database):
        yield payment_settings.pg_dsn()


@pytest.fixture(scope="session")
def stripe_client(payment_settings: Settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        payment_settings.stripe_api_key,
        base_addresses={"api": payment_settings.stripe_api_base},
    )


def payments_app(settings: Settings, **routes: Any) -> FastAPI:
    """The payment routes alone (checkout open to any caller: the API's auth is tested there)."""
    payment_routes = PaymentRoutes(
        settings, checkout_access=Depends(lambda: lambda account_id: None), **routes
    )
    app = FastAPI()
    app.include_router(payment_routes.router)
    install_error_handlers(app)
    return app


@pytest.fixture(scope="session")
async def webhook_url(
    payment_settings: Settings, payment_topics: list[str], fake_stripe: FakeStripe
) -> AsyncIterator[str]:
    """The webhook endpoint on a free port; the fake Stripe sends its events there."""
    producer: AIOKafkaProducer = payments_producer(payment_settings)
    await producer.start()
    app = payments_app(payment_settings, producer=producer)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}/webhooks/stripe"
    fake_stripe.register_webhook(url, NEW_SECRET)
    yield url
    server.should_exit = True
    await serving
    await producer.stop()


@pytest.fixture(scope="session")
async def customers(
    payment_settings: Settings, payment_database: str
) -> AsyncIterator[PostgresCustomers]:
    directory = await PostgresCustomers.open(payment_settings)
    yield directory
    await directory.close()


@pytest.fixture(scope="session")
async def payments_running(
    payment_settings: Settings, payment_topics: list[str], customers: PostgresCustomers
) -> AsyncIterator[None]:
    """The payment consumer, as `credits run payments` runs it, for the whole session."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_payments(payment_settings, stop, customers=customers))
    yield
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=15)


async def wait_for_link(customers: PostgresCustomers, account_id: str) -> str:
    """The customer linked to the account once its `customer.created` webhook is processed."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            customer_id = await customers.customer_of(account_id)
            if customer_id is not None:
                return customer_id
            await asyncio.sleep(0.1)
