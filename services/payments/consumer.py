"""The payment consumer (`credits run payments`): `stripe.events` and `credits.events` in,
commands out on `credits.commands`, keyed by account id.

At least once, never lost: offsets are committed by hand, per partition, only after every
command a message produced (or its DLQ copy) is acknowledged by the brokers (acks=all). A crash
before the commit redelivers the message; its commands carry the same ids, so the ledger
applies them once. Bad input goes to `credits.dlq` with the error headers of DESIGN §2.1 and
the partition moves on; a failing dependency (Stripe, PostgreSQL) is retried a bounded number
of times, then the message goes to the DLQ as `retries_exhausted`. If Kafka itself fails the
component stops without committing (the runner stops the process; a restart resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from domain.commands import parse_command
from domain.errors import LedgerError
from infra.kafka_clients import acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.settings import Settings, Topic
from services.payments import metrics
from services.payments.customers import Customers, PostgresCustomers
from services.payments.errors import BadInput, ErrorCode, Transient
from services.payments.handler import PaymentHandler
from services.payments.mapping import Outcome
from services.payments.stripe_api import StripeApi
from services.payments.stripe_client import TRANSIENT_ERRORS, build_stripe_client

log = structlog.get_logger("credits.payments")

GROUP_ID = "credits-payments"
MAX_BATCH = 100
POLL_TIMEOUT_MS = 500
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 3.0
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_DLQ_MESSAGE_CHARS = 1000
_RETRIED: tuple[type[Exception], ...] = (Transient, psycopg.OperationalError, *TRANSIENT_ERRORS)


class Stopped(Exception):
    """`stop` was set while a message waited to be retried: leave it uncommitted."""


class PaymentConsumer:
    """Turns one record into acknowledged commands (or a DLQ copy). Kafka-facing, no loop."""

    def __init__(
        self,
        settings: Settings,
        handler: PaymentHandler,
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.handler = handler
        self.producer = producer
        self.stop = stop
        self.clock = clock
        self.stripe_topic = settings.topic(Topic.STRIPE_EVENTS)
        self.events_topic = settings.topic(Topic.EVENTS)
        self.commands_topic = settings.topic(Topic.COMMANDS)
        self.dlq_topic = settings.topic(Topic.DLQ)

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            outcome = await self._with_retries(lambda: self._decide(record))
            commands = [_validated(c) for c in outcome.commands]
        except BadInput as e:
            self._count(record, f"dlq_{e.code}")
            await self._dead_letter(record, e.code, e.message)
            return
        acks = [
            await self.producer.send(
                self.commands_topic,
                key=command["account_id"].encode(),
                value=json.dumps(command, separators=(",", ":")).encode(),
            )
            for command in commands
        ]
        # Sent in order (one partition per account keeps it); all acknowledged before the commit.
        await asyncio.gather(*acks)
        self._count(record, "commands" if commands else outcome.note or "nothing")
        if commands:
            log.info(
                "commands sent",
                source=record.topic,
                offset=record.offset,
                commands=[(c["type"], c["command_id"]) for c in commands],
            )

    async def _decide(self, record: ConsumerRecord[bytes, bytes]) -> Outcome:
        message = _json_object(record.value)
        if record.topic == self.stripe_topic:
            return await self.handler.stripe_event(message)
        return await self.handler.cloud_event(message, self.clock())

    async def _with_retries(self, attempt: Callable[[], Awaitable[Outcome]]) -> Outcome:
        for number in range(1, MAX_ATTEMPTS + 1):
            try:
                return await attempt()
            except _RETRIED as e:
                if number == MAX_ATTEMPTS:
                    raise BadInput(
                        ErrorCode.retries_exhausted, f"{type(e).__name__}: {e}"
                    ) from None
                log.warning("retrying", attempt=number, error=f"{type(e).__name__}: {e}")
                pause = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (number - 1))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=pause)
                if self.stop.is_set():
                    raise Stopped from None
        raise AssertionError("unreachable")

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], code: str, message: str
    ) -> None:
        log.warning("dead letter", source=record.topic, offset=record.offset, code=code)
        headers = [
            ("error.code", code.encode()),
            ("error.message", message[:MAX_DLQ_MESSAGE_CHARS].encode()),
            ("source.topic", record.topic.encode()),
            ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()),
        ]
        await self.producer.send_and_wait(
            self.dlq_topic, key=record.key, value=record.value, headers=headers
        )

    def _count(self, record: ConsumerRecord[bytes, bytes], outcome: str) -> None:
        if record.topic == self.stripe_topic:
            metrics.STRIPE_EVENTS.labels(type=_type_of(record.value), outcome=outcome).inc()
        else:
            metrics.TOP_UP_REQUESTS.labels(outcome=outcome).inc()


async def run_payments(
    settings: Settings,
    stop: asyncio.Event,
    *,
    api: StripeApi | None = None,
    customers: Customers | None = None,
) -> None:
    """The `payments` component: runs until `stop` is set."""
    owned_customers = None
    if customers is None:
        owned_customers = customers = await PostgresCustomers.open(settings)
    handler = PaymentHandler(
        api or StripeApi(build_stripe_client(settings)),
        customers,
        cancel_plan=settings.payments_cancel_plan,
        success_url=settings.checkout_success_url,
        cancel_url=settings.checkout_cancel_url,
    )
    timeout_ms = int(settings.kafka_request_timeout_seconds * 1000)
    producer = acknowledged_producer(settings, "credits-payments")
    consumer = kafka_consumer(
        settings,
        settings.topic(Topic.STRIPE_EVENTS),
        settings.topic(Topic.EVENTS),
        client_id="credits-payments",
        group_id=f"{settings.topic_prefix}{GROUP_ID}",
        auto_offset_reset="earliest",
        max_poll_records=MAX_BATCH,
        fetch_max_bytes=8 * MAX_MESSAGE_BYTES,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        request_timeout_ms=max(timeout_ms, 40_000),
    )
    await producer.start()
    try:
        await consumer.start()
        try:
            payments = PaymentConsumer(settings, handler, producer, stop)
            log.info("payments started", group=f"{settings.topic_prefix}{GROUP_ID}")
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH)
                for partition, records in batch.items():
                    done = None
                    try:
                        for record in records:
                            await payments.process(record)
                            done = record.offset + 1
                    except Stopped:
                        break
                    finally:
                        if done is not None:
                            await _commit(consumer, partition, done)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
        if owned_customers is not None:
            await owned_customers.close()
        log.info("payments stopped")


async def _commit(consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
    try:
        await consumer.commit({partition: offset})
    except CommitFailedError as e:
        # A rebalance took the partition: its new owner redelivers; the command ids dedupe.
        log.warning("commit failed", partition=str(partition), error=str(e))


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise BadInput(ErrorCode.invalid_json, "empty message")
    try:
        decoded = json.loads(value)
    except ValueError as e:
        raise BadInput(ErrorCode.invalid_json, f"not JSON: {e}") from None
    if not isinstance(decoded, dict):
        raise BadInput(ErrorCode.invalid_json, "not a JSON object")
    return decoded


def _validated(command: dict[str, Any]) -> dict[str, Any]:
    """Only commands the ledger can parse leave: a bad mapping goes to the DLQ instead."""
    try:
        parse_command(command)
    except LedgerError as e:
        raise BadInput(ErrorCode.invalid_command, e.message) from None
    return command


def _type_of(value: bytes | None) -> str:
    try:
        event_type = json.loads(value or b"").get("type")
    except (ValueError, AttributeError):
        return "invalid"
    return metrics.label(event_type) if isinstance(event_type, str) else "invalid"
