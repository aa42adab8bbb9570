"""The payment consumer (`credits run payments`): `stripe.events`, `credits.events` and the
ledger's replies to its own commands in; commands on `credits.commands` (keyed by account id),
refunds at Stripe and `credits.payment_refunded` out.

At least once, never lost: offsets are committed by hand, per partition, only after every
message a record produced (or its DLQ copy) is acknowledged by the brokers (acks=all). A crash
before the commit redelivers the record; its commands carry the same ids, so the ledger applies
them once. Each record ends as commands sent, ignored with a count, or dead-lettered
(processing.py). Outages of PostgreSQL or Kafka are waited out, however long, with the
component not ready meanwhile (`/readyz`, one log line when it starts and one when it ends), and
it resumes within a couple of seconds of the server being back; a stop (SIGTERM) ends every
wait at once, and the whole component within `STOP_BUDGET_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from infra.kafka_clients import acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.kafka_lag import ConsumerLag
from infra.kafka_probe import broker_answers
from infra.kafka_topics import create_topics
from infra.outages import ASYNCPG_OUTAGE
from infra.readiness import READINESS
from infra.retry import UNTIL_BACK, Stopped, retry
from infra.settings import Settings, Topic
from services.payments.customers import Customers, PostgresCustomers
from services.payments.handler import PaymentHandler
from services.payments.pool import acquire_timeout_seconds, close_pool, open_pool
from services.payments.processing import KAFKA_OUTAGES, RecordProcessor
from services.payments.purchases import PostgresPurchases
from services.payments.stripe_api import StripeApi
from services.payments.stripe_client import build_stripe_client

log = structlog.get_logger("credits.payments")

COMPONENT = "payments"
GROUP_ID = "credits-payments"
MAX_BATCH = 100
POLL_TIMEOUT_MS = 500
MAX_FETCH_BYTES = 16 * 1024 * 1024
# While idle, whether a broker answers is checked this often (readiness during an outage).
IDLE_PROBE_SECONDS = 2.0
# Stopping: a record under way gets this long to finish (it is redelivered otherwise), then the
# Kafka clients and the pools get theirs. Under 10 s in all.
RECORD_GRACE_SECONDS = 2.0
CLIENT_STOP_SECONDS = 2.0

T = TypeVar("T")


class _Readiness:
    """`/readyz` for this component: ready only when nothing is failing."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}
        READINESS.register(COMPONENT)

    def on_state(self, ok: bool, reason: str) -> None:
        doing = reason.split(":", 1)[0]
        if ok:
            self.failing.pop(doing, None)
        else:
            self.failing[doing] = reason
        self._report()

    def started(self) -> None:
        self.failing.pop("starting", None)
        self._report()

    def kafka(self, answers: bool) -> None:
        was = "kafka" not in self.failing
        if answers == was:
            return
        if answers:
            self.failing.pop("kafka", None)
            log.warning("Kafka answers again")
        else:
            self.failing["kafka"] = "kafka: no broker answers"
            log.warning("Kafka does not answer; waiting for it")
        self._report()

    def stopped(self) -> None:
        READINESS.report(COMPONENT, ready=False, detail="stopped")

    def _report(self) -> None:
        detail = "; ".join(self.failing.values())
        READINESS.report(COMPONENT, ready=not self.failing, detail=detail or "consuming")


async def run_payments(
    settings: Settings,
    stop: asyncio.Event,
    *,
    api: StripeApi | None = None,
    customers: Customers | None = None,
) -> None:
    """The `payments` component: runs until `stop` is set."""
    readiness = _Readiness()
    readiness.failing["starting"] = "starting"
    owned: list[Any] = []
    try:
        await _run(settings, stop, readiness, owned, api=api, customers=customers)
    except Stopped:
        pass
    finally:
        readiness.stopped()
        for closing in reversed(owned):
            await _closed(closing)
        log.info("payments stopped")


async def _closed(closing: Callable[[], Awaitable[None]]) -> None:
    """Closes one client within `CLIENT_STOP_SECONDS`, whatever it raises: aiokafka's clients
    may end their own tasks cancelled when the broker is gone. Our own cancellation goes on."""
    try:
        await asyncio.wait_for(closing(), timeout=CLIENT_STOP_SECONDS)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("a client ended cancelled while closing")
    except Exception as error:  # closing is best effort: the process is stopping
        log.warning("a client did not close cleanly", error=f"{type(error).__name__}: {error}")


async def _run(
    settings: Settings,
    stop: asyncio.Event,
    readiness: _Readiness,
    owned: list[Any],
    *,
    api: StripeApi | None,
    customers: Customers | None,
) -> None:
    def until_up(attempt: Callable[[], Awaitable[T]], doing: str) -> Awaitable[T]:
        return retry(
            attempt,
            doing=doing,
            retry_on=(*ASYNCPG_OUTAGE, *KAFKA_OUTAGES),
            backoff=UNTIL_BACK,
            stop=stop,
            on_state=readiness.on_state,
        )

    # The process's pool, for both tables.
    pool = await until_up(lambda: open_pool(settings), "opening PostgreSQL")
    owned.append(lambda: close_pool(pool))
    wait_seconds = acquire_timeout_seconds(settings)
    purchases = PostgresPurchases(pool, acquire_timeout_seconds=wait_seconds)
    await until_up(purchases.create_tables, "creating the payment tables")
    if customers is None:
        directory = PostgresCustomers(pool, acquire_timeout_seconds=wait_seconds)
        await until_up(directory.create_table, "creating the payment tables")
        customers = directory
    handler = PaymentHandler(
        api or StripeApi(build_stripe_client(settings)),
        customers,
        purchases,
        cancel_plan=settings.payments_cancel_plan,
        success_url=settings.checkout_success_url,
        cancel_url=settings.checkout_cancel_url,
    )
    replies_topic = settings.topic(Topic.PAYMENTS_REPLIES)
    await until_up(lambda: create_topics(settings, [replies_topic]), "creating the replies topic")
    producer = await until_up(lambda: _started_producer(settings), "starting the Kafka producer")
    owned.append(producer.stop)
    consumer = await until_up(lambda: _started_consumer(settings), "starting the Kafka consumer")
    owned.append(consumer.stop)
    processor = RecordProcessor(
        settings, handler, purchases, producer, stop, on_state=readiness.on_state
    )
    readiness.started()
    log.info("payments started", group=_group(settings))
    await _consume(settings, consumer, processor, stop, readiness)


async def _consume(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    processor: RecordProcessor,
    stop: asyncio.Event,
    readiness: _Readiness,
) -> None:
    servers = settings.kafka_bootstrap_servers()
    probe_timeout = min(2.0, settings.kafka_request_timeout_seconds)
    last_probe = time.monotonic()
    lag = ConsumerLag(_group(settings))
    while not stop.is_set():
        batch = await retry(
            lambda: consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH),
            doing="reading from Kafka",
            retry_on=KAFKA_OUTAGES,
            backoff=UNTIL_BACK,
            stop=stop,
            on_state=readiness.on_state,
        )
        if not batch and time.monotonic() - last_probe > IDLE_PROBE_SECONDS:
            last_probe = time.monotonic()
            readiness.kafka(await asyncio.to_thread(_any_broker_answers, servers, probe_timeout))
        for partition, records in batch.items():
            done = None
            for record in records:
                try:
                    await _until_stopped(processor.process(record), stop)
                except Stopped:
                    break
                done = record.offset + 1
            if done is not None:
                await _commit(consumer, partition, done)
                lag.advance(partition, done)
            if stop.is_set():
                return
        if batch:
            readiness.kafka(True)
        lag.report(consumer)


async def _until_stopped(work: Awaitable[None], stop: asyncio.Event) -> None:
    """`work`, unless a stop comes and it does not end within `RECORD_GRACE_SECONDS`: then it
    is cancelled and `Stopped` raised (its record is not committed: it comes again)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=RECORD_GRACE_SECONDS)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Stopped):
                await task
            raise Stopped("a record was under way")
        task.result()
    finally:
        stopping.cancel()


async def _commit(consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
    try:
        await asyncio.wait_for(
            consumer.commit({partition: offset}), timeout=CLIENT_STOP_SECONDS * 5
        )
    except CommitFailedError as error:
        # A rebalance took the partition: its new owner redelivers; the ids dedupe.
        log.warning("commit failed", partition=str(partition), error=str(error))
    except (KafkaError, OSError, TimeoutError) as error:
        # The next commit covers this one; a crash before it only redelivers.
        log.warning("commit not acknowledged", partition=str(partition), error=str(error))


def _group(settings: Settings) -> str:
    return f"{settings.topic_prefix}{GROUP_ID}"


async def _started_producer(settings: Settings) -> AIOKafkaProducer:
    producer = acknowledged_producer(settings, "credits-payments")
    try:
        await producer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout=CLIENT_STOP_SECONDS)
        raise
    return producer


async def _started_consumer(settings: Settings) -> AIOKafkaConsumer:
    consumer = kafka_consumer(
        settings,
        settings.topic(Topic.STRIPE_EVENTS),
        settings.topic(Topic.EVENTS),
        settings.topic(Topic.PAYMENTS_REPLIES),
        client_id="credits-payments",
        group_id=_group(settings),
        auto_offset_reset="earliest",
        max_poll_records=MAX_BATCH,
        fetch_max_bytes=MAX_FETCH_BYTES,
        max_partition_fetch_bytes=MAX_FETCH_BYTES,
        # A JoinGroup waits up to the rebalance timeout (the 10 s session timeout) at the
        # broker: a shorter request timeout would fail every rebalance.
        request_timeout_ms=max(int(settings.kafka_request_timeout_seconds * 1000), 40_000),
    )
    try:
        await consumer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), timeout=CLIENT_STOP_SECONDS)
        raise
    return consumer


def _any_broker_answers(servers: list[tuple[str, int]], timeout_seconds: float) -> bool:
    return any(broker_answers(host, port, timeout_seconds) for host, port in servers)
