"""Request and reply over Kafka: produce keyed by account, match replies by correlation id.

Each call gets a fresh `correlation_id` header (so a retry of the same command is a new call
that gets its own reply) and a `reply_to` header naming this client's reply topic. The reply
topic is read without a consumer group, every partition, from its end at start: replies sent
before this process started belong to calls nobody waits for any more. A record whose
correlation id is not pending (another client's, on a shared topic, or a reply that came after
its call timed out) is skipped before its value is decoded.

Bounds: `max_in_flight` calls at once (a semaphore; later calls wait for a slot, inside their
own timeout), so the pending map never holds more than `max_in_flight` entries; every call ends
within its `timeout_seconds`, whatever Kafka or the ledger do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from credits_client.connection import KafkaSettings
from credits_client.errors import ClientClosed
from credits_client.kafka_clients import acknowledged_producer
from credits_client.kafka_clients import consumer as kafka_consumer
from credits_client.reply_topic import (
    delete_reply_topic,
    ensure_reply_topic,
    wait_for_partitions,
)

# The standard library's logging, as a library's should: the service renders these lines with
# its own (structlog), a producer service with whatever it configured.
log = logging.getLogger("credits.client")

# A fetch returns as soon as a reply is there; this only bounds how long an idle one waits.
READ_POLL_MS = 200
MAX_READ_RECORDS = 500


@dataclass
class TransportStats:
    calls: int = 0
    timeouts: int = 0
    # Replies nobody waited for: another client's on a shared topic, or late ones.
    unmatched_replies: int = 0


class NotAcknowledged(TimeoutError):
    """The call's time ran out before the brokers acknowledged the command."""

    def __init__(self, correlation_id: str) -> None:
        super().__init__(f"not acknowledged (correlation_id {correlation_id})")
        self.correlation_id = correlation_id


@dataclass(frozen=True)
class ReplyRecord:
    correlation_id: str
    value: bytes


class KafkaTransport:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str,
        commands_topic: str,
        reply_topic: str,
        create_reply_topic: bool,
        delete_reply_topic_on_stop: bool,
        reply_retention_seconds: int,
        max_in_flight: int,
        start_timeout_seconds: float,
    ) -> None:
        assert max_in_flight >= 1
        self.settings = settings
        self.commands_topic = commands_topic
        self.reply_topic = reply_topic
        self.max_in_flight = max_in_flight
        self.stats = TransportStats()
        self._create_reply_topic = create_reply_topic
        self._delete_reply_topic_on_stop = delete_reply_topic_on_stop
        self._reply_retention_seconds = reply_retention_seconds
        self._start_timeout_seconds = start_timeout_seconds
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: dict[str, asyncio.Future[ReplyRecord]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed_reason: str | None = "not started"
        self._stopped = False
        self._client_id = client_id
        # Made in start(): aiokafka clients belong to the running loop, and a client that is
        # never started then holds no connection to close.
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        try:
            async with asyncio.timeout(self._start_timeout_seconds):
                await self._start()
        except BaseException:
            await self._stop_clients()
            raise
        self._closed_reason = None
        self._reader = asyncio.create_task(self._read_replies(), name="credits-client-replies")

    async def _start(self) -> None:
        settings = self.settings
        if self._create_reply_topic:
            await ensure_reply_topic(settings, self.reply_topic, self._reply_retention_seconds)
        partitions = await wait_for_partitions(settings, self.reply_topic)
        self._producer = acknowledged_producer(settings, self._client_id)
        await self._producer.start()
        self._consumer = consumer = kafka_consumer(
            settings, client_id=self._client_id, group_id=None, auto_offset_reset="latest"
        )
        await consumer.start()
        assignment = [TopicPartition(self.reply_topic, p) for p in range(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_end(*assignment)
        # Resolve the end offsets now: a lazy reset after the first send could skip its reply.
        for partition in assignment:
            await consumer.position(partition)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._closed_reason is None:
            self._closed_reason = "stopped"
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._fail_pending(self._closed_reason or "stopped")
        await self._stop_clients()
        if self._delete_reply_topic_on_stop:
            await delete_reply_topic(self.settings, self.reply_topic)

    async def _stop_clients(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    # ------------------------------------------------------------------ one call

    async def request(
        self,
        *,
        key: bytes,
        value: bytes,
        timeout_seconds: float,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[str, ReplyRecord | None]:
        """Sends and waits; returns (correlation id, reply), the reply None when the command
        was acknowledged but no reply came in time; raises `NotAcknowledged` when the time ran
        out before the brokers acknowledged the command."""
        correlation_id = uuid.uuid4().hex
        self.stats.calls += 1
        acknowledged = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_seconds), self._slots:
                reply = await self._send_and_wait(correlation_id, key, value, acknowledged, headers)
                return correlation_id, reply
        except TimeoutError:
            self.stats.timeouts += 1
            if not acknowledged.is_set():
                raise NotAcknowledged(correlation_id) from None
            return correlation_id, None

    async def _send_and_wait(
        self,
        correlation_id: str,
        key: bytes,
        value: bytes,
        acknowledged: asyncio.Event,
        headers: Sequence[tuple[str, bytes]],
    ) -> ReplyRecord:
        if self._closed_reason is not None or self._producer is None:
            raise ClientClosed(f"the client is {self._closed_reason}")
        assert len(self._pending) < self.max_in_flight, "the semaphore bounds the pending map"
        reply: asyncio.Future[ReplyRecord] = asyncio.get_running_loop().create_future()
        # Registered before producing: the reply may be read before the ack is processed.
        self._pending[correlation_id] = reply
        try:
            ack = await self._producer.send(
                self.commands_topic,
                key=key,
                value=value,
                headers=[
                    ("correlation_id", correlation_id.encode()),
                    ("reply_to", self.reply_topic.encode()),
                    *headers,
                ],
            )
            await ack
            acknowledged.set()
            return await reply
        finally:
            self._pending.pop(correlation_id, None)

    # ------------------------------------------------------------------ replies

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                batches = await self._consumer.getmany(
                    timeout_ms=READ_POLL_MS, max_records=MAX_READ_RECORDS
                )
                for records in batches.values():
                    for record in records:
                        self._deliver(record)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Without a reader every call would only time out: fail them now, refuse new ones.
            self._closed_reason = f"broken: the reply reader failed: {error!r}"
            log.error("reply reader failed on %s: %r", self.reply_topic, error)
            self._fail_pending(self._closed_reason)

    def _deliver(self, record: ConsumerRecord[bytes, bytes]) -> None:
        correlation_id = _header(record, "correlation_id")
        waiting = self._pending.get(correlation_id) if correlation_id is not None else None
        if waiting is None or waiting.done():
            self.stats.unmatched_replies += 1
            return
        assert correlation_id is not None
        waiting.set_result(ReplyRecord(correlation_id=correlation_id, value=record.value or b""))

    def _fail_pending(self, reason: str) -> None:
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(ClientClosed(f"the client is {reason}"))


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                return None
    return None
