"""The payment side rides out outages by itself: PostgreSQL stopped (`pg_ctl stop -m immediate`)
for 20 s and the Kafka broker killed (SIGKILL) for 30 s while signed webhooks flow, on a private
PostgreSQL and Kafka. Every webhook still ends as its command on `credits.commands`, none is
applied twice, the payment consumer never exits and is ready again without a restart; and it
stops within 10 s of a stop in the middle of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import TopicPartition

from infra.kafka_clients import consumer as kafka_consumer
from infra.kafka_topics import create_topics
from infra.metrics import REGISTRY
from infra.readiness import READINESS
from infra.settings import Settings, Topic
from services.payments.consumer import run_payments
from services.payments.http import payments_producer
from services.payments.metadata import PaymentMetadata
from tests.databases import fresh_database
from tests.faults.private_stack import PrivateStack
from tests.kit.ports import free_port
from tests.payments.conftest import CATALOGS, memory_ledger, payments_app, signed, stripe_event

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SECRET = "whsec_outages"
PG_OUTAGE_SECONDS = 20
KAFKA_OUTAGE_SECONDS = 30
WEBHOOKS_PER_SECOND = 4
# Bounds, not speeds: a webhook Stripe would retry for days gets a minute and a half here.
DELIVERY_DEADLINE_SECONDS = 90
ALL_COMMANDS_DEADLINE_SECONDS = 120
STOP_BOUND_SECONDS = 10


@dataclass
class Flow:
    settings: Settings
    webhook_url: str
    stop: asyncio.Event
    payments: asyncio.Task[None]
    delivered: dict[str, str] = field(default_factory=dict)  # payment intent -> account


@pytest.fixture(scope="module")
def outage_settings(private_stack: PrivateStack) -> Iterator[Settings]:
    own = private_stack.settings.model_copy(
        update={
            "pg_database": f"payments_outages_{uuid.uuid4().hex[:8]}",
            "topic_prefix": f"outages-{uuid.uuid4().hex[:6]}.",
            "stripe_webhook_secrets": SECRET,
            "catalog_path": CATALOGS / "seed_002_plus_credits.toml",
            # Nothing here calls Stripe; a dead address makes any call fail fast.
            "stripe_api_base": "http://127.0.0.1:9",
            "kafka_request_timeout_seconds": 3.0,
            "pg_connect_timeout_seconds": 2.0,
        }
    )
    with fresh_database(private_stack.settings, own.pg_database):
        yield own


@pytest.fixture
async def flow(outage_settings: Settings) -> AsyncIterator[Flow]:
    await create_topics(outage_settings)
    producer = payments_producer(outage_settings)
    await producer.start()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            payments_app(outage_settings, producer=producer),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    stop = asyncio.Event()
    payments = asyncio.create_task(run_payments(outage_settings, stop))
    async with asyncio.timeout(60):
        while not (server.started and _payments_ready()):
            await asyncio.sleep(0.1)
    try:
        yield Flow(outage_settings, f"http://127.0.0.1:{port}/webhooks/stripe", stop, payments)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(payments, timeout=STOP_BOUND_SECONDS * 2)
        server.should_exit = True
        await serving
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout=10)


def _payments_ready() -> bool:
    state = READINESS.snapshot().get("payments")
    return state is not None and state.ready


async def _deliver(flow: Flow, client: httpx.AsyncClient, number: int) -> None:
    """One checkout, its webhook retried until it is accepted (as Stripe retries)."""
    account = f"acct-{number}"
    intent = f"pi_{uuid.uuid4().hex[:16]}"
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200")
    session = {
        "id": f"cs_{uuid.uuid4().hex}",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": intent,
        "amount_total": 599,
        "currency": "usd",
        "metadata": meta.to_stripe(),
    }
    event = stripe_event("checkout.session.completed", session, f"evt_{uuid.uuid4().hex}")
    deadline = time.monotonic() + DELIVERY_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        body, header = signed(event, SECRET)
        with contextlib.suppress(httpx.HTTPError):
            answer = await client.post(
                flow.webhook_url, content=body, headers={"Stripe-Signature": header}, timeout=15
            )
            if answer.status_code == 200:
                flow.delivered[intent] = account
                return
        await asyncio.sleep(1.0)
    raise AssertionError(f"webhook {number} was never accepted")


async def _webhooks_until(flow: Flow, done: asyncio.Event) -> None:
    async with httpx.AsyncClient() as client:
        sending: list[asyncio.Task[None]] = []
        number = 0
        while not done.is_set():
            sending.append(asyncio.create_task(_deliver(flow, client, number)))
            number += 1
            await asyncio.sleep(1 / WEBHOOKS_PER_SECOND)
        await asyncio.gather(*sending)


def _stripe_events_handled() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "credits_payments_stripe_events"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def _working_again_after(server_back_at: float) -> float:
    """Seconds from the server being back to the payment consumer ready and handling records
    again (webhooks keep coming, so one is there to handle)."""
    handled = _stripe_events_handled()
    async with asyncio.timeout(60):
        while not _payments_ready() or _stripe_events_handled() == handled:
            await asyncio.sleep(0.05)
    return time.monotonic() - server_back_at


async def _commands(settings: Settings, wanted: set[str]) -> list[dict[str, Any]]:
    """Every record of credits.commands, once all of `wanted` (command ids) are among them."""
    topic = settings.topic(Topic.COMMANDS)
    consumer = kafka_consumer(settings, client_id="outage-tests", group_id=None)
    await consumer.start()
    try:
        if not consumer.partitions_for_topic(topic):
            await consumer._client.force_metadata_update()
        numbers = sorted(consumer.partitions_for_topic(topic) or [])
        assert numbers, f"no partitions for {topic}"
        partitions = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(ALL_COMMANDS_DEADLINE_SECONDS):
            while not wanted <= {c["command_id"] for c in found}:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batch.values():
                    found += [json.loads(r.value or b"") for r in records]
        return found
    finally:
        await consumer.stop()


async def test_postgres_and_kafka_outages_lose_no_webhook_and_apply_none_twice(
    private_stack: PrivateStack, flow: Flow
) -> None:
    done = asyncio.Event()
    sending = asyncio.create_task(_webhooks_until(flow, done))
    await asyncio.sleep(5)

    await asyncio.to_thread(private_stack.stop_postgres_immediately)
    await asyncio.sleep(PG_OUTAGE_SECONDS)
    await asyncio.to_thread(private_stack.start_postgres)
    pg_recovery = await _working_again_after(time.monotonic())
    await asyncio.sleep(5)

    await asyncio.to_thread(private_stack.kill_kafka)
    await asyncio.sleep(KAFKA_OUTAGE_SECONDS)
    await asyncio.to_thread(private_stack.start_kafka)
    kafka_recovery = await _working_again_after(time.monotonic())
    await asyncio.sleep(5)
    done.set()
    await sending
    assert not flow.payments.done(), "the payment consumer never exits on an outage"

    wanted = {f"stripe:{intent}:purchase" for intent in flow.delivered}
    commands = await _commands(flow.settings, wanted)
    ids = [c["command_id"] for c in commands]
    print(
        f"\n{len(wanted)} webhooks accepted during a {PG_OUTAGE_SECONDS} s PostgreSQL outage "
        f"and a {KAFKA_OUTAGE_SECONDS} s Kafka outage; {len(ids)} commands on the topic "
        f"({len(ids) - len(set(ids))} redelivered copies); payments handling records again "
        f"{pg_recovery:.1f} s after PostgreSQL and {kafka_recovery:.1f} s after Kafka was back"
    )
    assert set(ids) == wanted, "every accepted webhook became its command, and nothing else"
    ledger = memory_ledger("seed_002_plus_credits.toml")
    for account in set(flow.delivered.values()):
        ledger.ok("open_account", account, "open", plan="plus")
    replies = ledger.apply(commands)
    accepted = [r.command_id for r in replies if r.status == "accepted"]
    assert sorted(accepted) == sorted(wanted), "each payment granted exactly once"
    assert {r.status for r in replies} <= {"accepted", "duplicate"}
    for intent, account in flow.delivered.items():
        lots = ledger.account(account).lots.values()
        assert [x.payment_reference for x in lots if x.source == "purchase"].count(intent) == 1


async def test_a_stop_during_a_kafka_outage_ends_the_payment_consumer_in_time(
    private_stack: PrivateStack, flow: Flow
) -> None:
    await asyncio.to_thread(private_stack.kill_kafka)
    try:
        async with asyncio.timeout(60):
            while _payments_ready():
                await asyncio.sleep(0.1)  # it noticed: waiting for Kafka, not ready
        flow.stop.set()
        await asyncio.wait_for(flow.payments, timeout=STOP_BOUND_SECONDS)
    finally:
        await asyncio.to_thread(private_stack.start_kafka)


async def test_a_stop_during_a_postgres_outage_ends_the_payment_consumer_in_time(
    private_stack: PrivateStack, flow: Flow
) -> None:
    await asyncio.to_thread(private_stack.stop_postgres_immediately)
    try:
        async with httpx.AsyncClient() as client:
            await _deliver(flow, client, 0)  # it now waits for PostgreSQL with this record
        async with asyncio.timeout(60):
            while _payments_ready():
                await asyncio.sleep(0.1)
        flow.stop.set()
        await asyncio.wait_for(flow.payments, timeout=STOP_BOUND_SECONDS)
    finally:
        await asyncio.to_thread(private_stack.start_postgres)
