"""Reading the DLQ topic and sending its records back: what `credits dlq` does on Kafka.

The reader joins no consumer group and commits nothing: listing the DLQ moves no one's offsets.
Every read is bounded (records per partition, and time), and a record's value is kept only
where the caller needs it (a DLQ record can be ~580 KiB: `infra/dlq.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.dlq import DlqRecord
from infra.kafka_clients import acknowledged_producer, consumer, stop_producer
from infra.kafka_topics import partition_counts
from infra.settings import Settings, Topic

CLIENT_ID = "credits-cli-dlq"
# `--limit`: records read per DLQ partition, newest first.
DEFAULT_READ_RECORDS = 1000
MAX_READ_RECORDS = 100_000
# Topics a replay may write to: those only this service reads, each reader idempotent (command
# ids, Stripe event ids, reply correlation). Not credits.events (public: every reader would see
# the event twice) nor credits.replies (a client waiting for a reply has long given up).
REPLAY_TOPICS = (Topic.COMMANDS, Topic.STRIPE_EVENTS, Topic.PAYMENTS_REPLIES)


@dataclass(frozen=True)
class Scan:
    records: list[DlqRecord]
    # Records in the DLQ older than the window read (per partition: all but the newest N).
    unread: int


@dataclass(frozen=True)
class Sent:
    record: DlqRecord
    topic: str
    partition: int
    offset: int


async def scan(
    settings: Settings,
    per_partition: int,
    keep: Callable[[DlqRecord], bool] = lambda _: True,
    *,
    with_values: bool,
) -> Scan:
    """The records `keep` accepts among the newest `per_partition` of each DLQ partition,
    oldest first; their values only `with_values`."""
    assert 0 < per_partition <= MAX_READ_RECORDS
    topic = settings.topic(Topic.DLQ)
    async with _reader(settings) as reader:
        partitions = await _partitions(settings, topic)
        if not partitions:
            return Scan([], 0)
        firsts = await reader.beginning_offsets(partitions)
        ends = await reader.end_offsets(partitions)
        starts = {tp: max(firsts[tp], ends[tp] - per_partition) for tp in partitions}
        unread = sum(starts[tp] - firsts[tp] for tp in partitions)
        wanted = [tp for tp in partitions if starts[tp] < ends[tp]]
        kept: list[DlqRecord] = []
        if wanted:
            reader.assign(wanted)
            for tp in wanted:
                reader.seek(tp, starts[tp])
            async for record in _Records(settings, reader, {tp: ends[tp] for tp in wanted}):
                read = _dlq_record(record, with_value=False)
                if keep(read):
                    kept.append(_dlq_record(record, with_value=with_values))
    kept.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return Scan(kept, unread)


async def fetch(settings: Settings, partition: int, offset: int) -> DlqRecord | None:
    """One DLQ record with its value; None when the DLQ holds no such record (any longer)."""
    topic = settings.topic(Topic.DLQ)
    async with _reader(settings) as reader:
        tp = TopicPartition(topic, partition)
        if tp not in await _partitions(settings, topic):
            return None
        first = (await reader.beginning_offsets([tp]))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        if not first <= offset < end:
            return None
        reader.assign([tp])
        reader.seek(tp, offset)
        async for record in _Records(settings, reader, {tp: offset + 1}):
            if record.offset == offset:
                return _dlq_record(record, with_value=True)
    return None


def replay_topics(settings: Settings) -> set[str]:
    return {settings.topic(t) for t in REPLAY_TOPICS}


async def send_back(settings: Settings, records: Sequence[DlqRecord]) -> list[Sent]:
    """Each record to its source topic with its original key, value and headers, in order,
    each acknowledged before the next is sent."""
    producer = acknowledged_producer(settings, CLIENT_ID)
    await producer.start()
    sent = []
    try:
        for record in records:
            assert record.source_topic in replay_topics(settings) and not record.truncated
            metadata = await producer.send_and_wait(
                record.source_topic,
                record.value,
                key=record.key,
                headers=record.original_headers(),
            )
            sent.append(Sent(record, record.source_topic, metadata.partition, metadata.offset))
    finally:
        await stop_producer(producer, within_seconds=settings.kafka_request_timeout_seconds)
    return sent


class _reader:
    """A consumer of no group, started and stopped around one read."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = consumer(
            settings,
            client_id=CLIENT_ID,
            group_id=None,
            auto_offset_reset="earliest",
            # The CLI prints only what it read: no records fetched ahead beyond one batch.
            max_partition_fetch_bytes=1024 * 1024,
        )

    async def __aenter__(self) -> AIOKafkaConsumer:
        await self.consumer.start()
        return self.consumer

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()


async def _partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    counts = await partition_counts(settings, [topic])
    return [TopicPartition(topic, p) for p in range(counts.get(topic, 0))]


class _Records:
    """Records up to `ends` (exclusive) of the assigned partitions, in a bounded time: a broker
    that stops answering ends the read with an error rather than a hang."""

    def __init__(
        self, settings: Settings, reader: AIOKafkaConsumer, ends: dict[TopicPartition, int]
    ) -> None:
        self.reader = reader
        self.ends = dict(ends)
        self.idle_seconds = max(settings.kafka_request_timeout_seconds, 5.0)
        self.batch: deque[ConsumerRecord] = deque()

    def __aiter__(self) -> _Records:
        return self

    async def __anext__(self) -> ConsumerRecord:
        last_progress = time.monotonic()
        while not self.batch:
            pending = [tp for tp, end in self.ends.items() if await self._position(tp) < end]
            if not pending:
                raise StopAsyncIteration
            if time.monotonic() - last_progress > self.idle_seconds:
                raise TimeoutError(
                    f"no DLQ record came in {self.idle_seconds:g} s; is Kafka answering?"
                )
            fetched = await self.reader.getmany(*pending, timeout_ms=1000, max_records=500)
            for tp, records in fetched.items():
                self.batch.extend(r for r in records if r.offset < self.ends[tp])
            if fetched:
                last_progress = time.monotonic()
        return self.batch.popleft()

    async def _position(self, tp: TopicPartition) -> int:
        return await asyncio.wait_for(self.reader.position(tp), timeout=self.idle_seconds)


def _dlq_record(record: ConsumerRecord, *, with_value: bool) -> DlqRecord:
    value: bytes | None = record.value
    return DlqRecord(
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=value if with_value else None,
        value_bytes=-1 if value is None else len(value),
        headers=[(name, header or b"") for name, header in record.headers],
    )
