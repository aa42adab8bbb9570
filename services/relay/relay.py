"""The outbox relay: every event of the event store's notification log to `credits.events`.

The notification log is the outbox: an event is in it exactly when its transaction committed,
in commit order, so the relay needs no table of its own but its position. It publishes a batch,
waits for Kafka's acknowledgements, and only then saves the position: at least once, in stream
order per account. A relay killed between the two publishes the batch again; consumers dedupe
by the CloudEvent `id`. An allocation event goes out as two records, itself then its
`credits.granted` view (services/relay/cloud_events.py), one after the other in the account's
partition: the pair keeps stream order, and a batch published again repeats both.

Order per account holds through failures too: a batch's events for one partition go out as one
Kafka record batch (all taken or none), the next one only once that is acknowledged, and a
batch that failed is published again whole, on a fresh producer, before anything after it.

Exactly one relay publishes at a time: it holds a PostgreSQL advisory lock on a connection of its
own, and checks that connection before each batch. Others stand by, trying again now and then,
and take over when that connection goes away. A database restart takes the lock with the
connection: the relay publishes nothing until it holds the lock again (on a new connection,
unless another relay took it meanwhile).

Outages (PostgreSQL or Kafka away) are retried with infra/retry.py for as long as they last; the
relay reports itself not ready meanwhile and resumes within a retry pause of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import structlog
from aiokafka import AIOKafkaProducer
from eventsourcing.persistence import Notification
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from domain.account import Account
from domain.integration import cloud_event_type
from infra.event_store.recorder import CreditsPostgresRecorder
from infra.kafka_clients import MURMUR2_PARTITIONER, acknowledged_producer, stop_producer
from infra.ledger_application import LedgerApplication
from infra.metrics import RELAY_LAG, RELAY_PUBLISHED
from infra.outages import KAFKA_OUTAGE, POSTGRES_OUTAGE
from infra.readiness import READINESS
from infra.retry import Stopped, retry, until_stopped
from infra.settings import Settings, Topic
from infra.tracing import TRACER, context_from_traceparent
from services.relay.cloud_events import CONTENT_TYPE, SequenceFormat, cloud_events, encode

log = structlog.get_logger("credits.relay")

T = TypeVar("T")

COMPONENT = "relay"
FOLLOWER_NAME = "relay:credits.events"
# Any fixed 64-bit number works; this one is "credits" in ASCII, so it is easy to recognise in
# pg_locks.
ADVISORY_LOCK_KEY = 0x63726564697473
MAX_BATCH_EVENTS = 500
# One Kafka record batch per partition per relay batch: room for 500 events of up to ~1 KiB,
# below the broker's default message limit (1 MiB).
MAX_RECORD_BATCH_BYTES = 512 * 1024
# Idle polls back off from the first to the second, so an idle relay costs a query every
# quarter second at most.
MIN_IDLE_POLL_SECONDS = 0.005
MAX_IDLE_POLL_SECONDS = 0.25
STANDBY_RETRY_SECONDS = 2.0
LOCK_CLOSE_SECONDS = 1.0
# A producer still holding records after this many seconds is closed without them.
PRODUCER_STOP_SECONDS = 1.5
# Kernel-level bounds on the lock connection: a server that vanished without closing it (a
# network partition) is noticed in seconds, not after the system's TCP timeout (minutes).
LOCK_CONNECTION_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


@dataclass
class RelayState:
    active: bool = False
    position: int = 0
    # Stored events published, and the Kafka records they made (an allocation event makes two:
    # itself and its `credits.granted` view).
    published: int = 0
    records: int = 0


class OutboxRelay:
    def __init__(self, settings: Settings, app: LedgerApplication) -> None:
        recorder = app.recorder
        assert isinstance(recorder, CreditsPostgresRecorder), "the relay reads PostgreSQL"
        self.settings = settings
        self.app = app
        self.recorder = recorder
        self.topic = settings.topic(Topic.EVENTS)
        self.sequence: SequenceFormat = (
            "integer" if settings.cloudevents_sequence == "integer" else "string"
        )
        self.state = RelayState()
        # A batch not acknowledged in this time is published again, on a fresh producer.
        self.ack_timeout_seconds = settings.kafka_request_timeout_seconds
        self._lock: psycopg.Connection[tuple[object, ...]] | None = None
        # The lock connection is used from this one thread only: a stop that abandons a call
        # on it cannot close it under that call.
        self._lock_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-lock")
        self._producer: AIOKafkaProducer | None = None
        # Set when a publish failed: its producer may still hold part of the batch.
        self._producer_failed = False
        self._idle_seconds = MIN_IDLE_POLL_SECONDS

    async def run(self, stop: asyncio.Event) -> None:
        READINESS.register(COMPONENT)
        try:
            while not stop.is_set():
                pause_seconds = await retry(
                    lambda: until_stopped(self.step(), stop, "relaying events"),
                    doing="relaying events",
                    retry_on=(*POSTGRES_OUTAGE, *KAFKA_OUTAGE),
                    stop=stop,
                    on_state=READINESS.reporter(COMPONENT),
                    before_retry=self._reset,
                )
                detail = "publishing" if self.state.active else "standing by: lock held elsewhere"
                READINESS.report(COMPONENT, ready=True, detail=detail)
                if pause_seconds:
                    await _wait(stop, pause_seconds)
        except Stopped:
            pass
        finally:
            READINESS.report(COMPONENT, ready=False, detail="stopped")
            await self._close()

    async def step(self) -> float:
        """One batch, if this relay holds the lock: the seconds to wait before the next."""
        if not await self._hold_lock():
            return STANDBY_RETRY_SECONDS
        batch = await asyncio.to_thread(
            self.recorder.select_notifications_once, self.state.position + 1, MAX_BATCH_EVENTS
        )
        if not batch:
            RELAY_LAG.set(0)
            self._idle_seconds = min(self._idle_seconds * 2, MAX_IDLE_POLL_SECONDS)
            return self._idle_seconds
        self._idle_seconds = MIN_IDLE_POLL_SECONDS
        await self.publish(batch)
        await self.save_position(batch[-1].id)
        # A batch short of full reached the head; only a full one needs the head read.
        behind = 0
        if len(batch) == MAX_BATCH_EVENTS:
            head = await asyncio.to_thread(self.recorder.max_notification_id)
            behind = max((head or 0) - batch[-1].id, 0)
        RELAY_LAG.set(behind)
        return 0.0

    async def _hold_lock(self) -> bool:
        """True while this relay holds the advisory lock (taking it if it is free)."""
        if self._lock is not None:
            try:
                # The lock lives as long as its connection: check it before publishing anything.
                await self._on_lock_thread(self._lock.execute, "SELECT 1")
                return True
            except psycopg.Error:
                self._drop_lock()
                raise
        self._lock = await self._on_lock_thread(self._try_lock)
        if self._lock is None:
            return False
        try:
            self.state.position = await asyncio.to_thread(
                self.recorder.select_follower_position, FOLLOWER_NAME
            )
        except BaseException:
            self._drop_lock()
            raise
        self.state.active = True
        log.info("relaying", topic=self.topic, from_position=self.state.position)
        return True

    def _try_lock(self) -> psycopg.Connection[tuple[object, ...]] | None:
        settings = self.settings
        conn = psycopg.connect(
            settings.pg_dsn(),
            autocommit=True,
            connect_timeout=int(settings.pg_connect_timeout_seconds),
            **LOCK_CONNECTION_OPTIONS,
        )
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        except BaseException:
            conn.close()
            raise
        if row is None or row[0] is not True:
            conn.close()
            return None
        return conn

    def _drop_lock(self) -> None:
        """After a failed call on the lock connection (none is running on it, then)."""
        if self.state.active:
            log.warning("relay lock lost with its connection; not publishing until held again")
        self.state.active = False
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # does not wait on the server: a closed socket at most

    async def _on_lock_thread(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._lock_thread, call, *args)

    async def publish(self, batch: Sequence[Notification]) -> None:
        producer = await self._started_producer()
        partitions = sorted(await producer.partitions_for(self.topic))
        events = [self.app.mapper.to_domain_event(n) for n in batch]
        traceparents = await self._traceparents(events)
        spans: list[Span] = []
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for event in events:
            assert isinstance(event, Account.Event), type(event)
            key = str(event.originator_id).encode()
            partition = MURMUR2_PARTITIONER(key, partitions, partitions)
            traceparent = traceparents.get((str(event.originator_id), event.command_id or ""))
            if traceparent is not None:
                spans.append(self._span(event, traceparent))
            records = by_partition.setdefault(partition, [])
            for published in cloud_events(event, traceparent, self.sequence):
                records.append((key, encode(published)))
        try:
            await self._publish(producer, by_partition)
        except BaseException as error:
            for span in spans:
                span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
                span.end()
            raise
        for span in spans:
            span.end()
        self.state.published += len(batch)
        self.state.records += sum(map(len, by_partition.values()))
        RELAY_PUBLISHED.inc(len(batch))

    async def _traceparents(self, events: list[Any]) -> dict[tuple[str, str], str]:
        """The traces of the commands that produced these events (stored with their receipts)."""
        keys = list(
            dict.fromkeys(
                (str(e.originator_id), e.command_id) for e in events if e.command_id is not None
            )
        )
        found: dict[tuple[str, str], str] = await asyncio.to_thread(
            self.recorder.select_traceparents, keys
        )
        return found

    def _span(self, event: Account.Event, traceparent: str) -> Span:
        return TRACER.start_span(
            f"relay {cloud_event_type(event)}",
            context=context_from_traceparent(traceparent),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self.topic,
                "cloudevents.event_id": f"{event.originator_id}:{event.originator_version}",
                "cloudevents.event_type": cloud_event_type(event),
            },
        )

    async def _publish(
        self, producer: AIOKafkaProducer, by_partition: dict[int, list[tuple[bytes, bytes]]]
    ) -> None:
        self._producer_failed = True  # until every partition's records are acknowledged
        # A broker that is away does not fail the sends (the producer retries them): the
        # timeout is what tells the relay, and its readiness, that Kafka is not taking them.
        async with asyncio.timeout(self.ack_timeout_seconds):
            try:
                async with asyncio.TaskGroup() as group:
                    for partition, records in by_partition.items():
                        group.create_task(self._publish_partition(producer, partition, records))
            except* Exception as failures:
                # One cause for the retry to log and classify, not a group of them.
                raise failures.exceptions[0] from None
        self._producer_failed = False

    async def _publish_partition(
        self, producer: AIOKafkaProducer, partition: int, records: list[tuple[bytes, bytes]]
    ) -> None:
        """In order, each record batch once the previous one is acknowledged."""
        headers = [("content-type", CONTENT_TYPE)]
        builder = producer.create_batch()
        for key, value in records:
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                await (await producer.send_batch(builder, self.topic, partition=partition))
                builder = producer.create_batch()
                appended = builder.append(key=key, value=value, timestamp=None, headers=headers)
                assert appended is not None, f"an event larger than {MAX_RECORD_BATCH_BYTES} B"
        await (await producer.send_batch(builder, self.topic, partition=partition))

    async def save_position(self, position: int) -> None:
        await asyncio.to_thread(self.recorder.save_follower_position, FOLLOWER_NAME, position)
        self.state.position = position

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = acknowledged_producer(
                self.settings, "credits-relay", linger_ms=0, max_batch_size=MAX_RECORD_BATCH_BYTES
            )
            try:
                await producer.start()
            except BaseException:
                await stop_producer(producer, within_seconds=PRODUCER_STOP_SECONDS)
                raise
            self._producer = producer
        return self._producer

    async def _reset(self) -> None:
        """Before a retry: drop what the failure may have left broken."""
        if self._producer_failed and self._producer is not None:
            # It may still deliver part of the failed batch later; on a fresh producer, what
            # is published again cannot be overtaken by what the old one held.
            producer, self._producer = self._producer, None
            await stop_producer(producer, within_seconds=PRODUCER_STOP_SECONDS)
        self._producer_failed = False
        # A restarted server leaves the pool's idle connections dead: test and replace them.
        with contextlib.suppress(*POSTGRES_OUTAGE):
            await asyncio.to_thread(self.recorder.drop_broken_connections)

    async def _close(self) -> None:
        self.state.active = False
        lock, self._lock = self._lock, None
        if lock is not None:
            # After whatever a stop abandoned on it; not waited for long (the process may be
            # ending: closing the connection gives the lock up anyway).
            closing = asyncio.ensure_future(self._on_lock_thread(lock.close))
            await asyncio.wait({closing}, timeout=LOCK_CLOSE_SECONDS)
        self._lock_thread.shutdown(wait=False)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await stop_producer(producer, within_seconds=PRODUCER_STOP_SECONDS)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
