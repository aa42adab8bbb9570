"""A small real-Kafka client for tests: produce keyed messages, read a topic back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import ConsumerRecord, TopicPartition

from infra.kafka_clients import acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.kafka_topics import create_topics, delete_topics
from infra.settings import Settings
from services.ledger.records import CommandRecord


@asynccontextmanager
async def created_topics(settings: Settings) -> AsyncIterator[list[str]]:
    """The public topics under `settings`' prefix: created now, deleted afterwards."""
    names = settings.all_topics()
    await create_topics(settings, names)
    try:
        yield names
    finally:
        await delete_topics(settings, names)


@dataclass(frozen=True)
class Received:
    """A record read back. Our producers never send null header values: read as bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> Received:
        copied = CommandRecord.of(record)
        headers = tuple((name, value or b"") for name, value in copied.headers)
        return cls(copied.topic, copied.partition, copied.offset, copied.key, copied.value, headers)


class KafkaTestClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = acknowledged_producer(settings, "credits-tests")

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def produce(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        """Sends and waits for the broker's ack; returns (partition, offset)."""
        metadata = await self._producer.send_and_wait(
            topic, value=value, key=key.encode(), headers=headers or []
        )
        return metadata.partition, metadata.offset

    async def read(self, topic: str, count: int, timeout_seconds: float = 30.0) -> list[Received]:
        """Reads `count` messages from the start of every partition (no consumer group)."""
        consumer = kafka_consumer(
            self._settings, client_id="credits-tests", auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()  # a topic created just now
                partitions = consumer.partitions_for_topic(topic) or set()
            assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assignment)
            await consumer.seek_to_beginning(*assignment)
            received: list[Received] = []
            async with asyncio.timeout(timeout_seconds):
                while len(received) < count:
                    batch = await consumer.getmany(timeout_ms=500, max_records=count)
                    for records in batch.values():
                        received.extend(Received.of(r) for r in records)
            return received
        finally:
            await consumer.stop()
