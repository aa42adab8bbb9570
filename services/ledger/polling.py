"""Polling `credits.commands`: records as bytes, and where the consumer stands in each partition.

No record is lost between Kafka and a batch: what a failed poll had drained is read again (see
`_read_unreadable`), and `polled_to` always says where the consumer stands, so a batch that is
not applied can be rewound exactly.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CorruptRecordException, KafkaError
from aiokafka.structs import TopicPartition

from infra.kafka_lag import ConsumerLag
from services.ledger.health import LedgerConsumerState
from services.ledger.records import CommandRecord
from services.ledger.unreadable import read_batches

log = structlog.get_logger("credits.ledger")

# How long a poll waits when nothing is there (it returns at once when records are). At 5 ms an
# idle ledger polls ~200 times a second and uses ~3% of a core.
POLL_TIMEOUT_MS = 5
# How long a batch that has room waits for records fetched right after it was polled.
TOP_UP_WAIT_MS = 1


class UnreadableBatchNotFound(Exception):
    """aiokafka failed to parse a fetch, and no record batch was found that explains it."""


class Poller:
    def __init__(
        self,
        kafka: AIOKafkaConsumer,
        topic: str,
        max_batch_records: int,
        state: LedgerConsumerState,
        *,
        group: str,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.max_batch_records = max_batch_records
        self.state = state
        # partition -> the offset after the last record polled: where the consumer stands.
        self.polled_to: dict[int, int] = {}
        self.answered_at = 0.0
        self.lag = ConsumerLag(group)

    async def poll(self) -> list[CommandRecord]:
        """The next batch: at most `max_batch_records`, possibly none. KafkaError: retry."""
        try:
            polled = await self.kafka.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self.max_batch_records
            )
        except Exception as error:
            return await self._after_failure(error, [])
        records = self._taken(polled)
        if records and len(records) < self.max_batch_records:
            records += await self._top_up(records)
        self.lag.report(self.kafka)
        return records

    def assigned(self) -> set[int]:
        return {tp.partition for tp in self.kafka.assignment() if tp.topic == self.topic}

    def seek(self, partition: int, offset: int) -> None:
        tp = TopicPartition(self.topic, partition)
        self.kafka.seek(tp, offset)
        self.polled_to[partition] = offset
        self.lag.advance(tp, offset)

    def rewind(self, records: list[CommandRecord]) -> None:
        """The next poll returns these records again (those of partitions still assigned)."""
        firsts: dict[int, int] = {}
        for record in records:
            firsts[record.partition] = min(
                record.offset, firsts.get(record.partition, record.offset)
            )
        assigned = self.assigned()
        for partition, offset in firsts.items():
            if partition in assigned:
                self.seek(partition, offset)

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.polled_to.pop(partition, None)
        self.lag.forget(TopicPartition(self.topic, partition) for partition in partitions)

    async def _top_up(self, records: list[CommandRecord]) -> list[CommandRecord]:
        """What reached the broker while the last batch was applied, waited for briefly.

        aiokafka fetches a partition again only once its buffered records are taken, and the
        poll that took them is the one this batch came from: without this, a record that
        arrives while a batch is applied waits for the whole next batch too (at 500 commands/s
        this halves the median command → reply time).
        """
        try:
            more = await self.kafka.getmany(
                timeout_ms=TOP_UP_WAIT_MS, max_records=self.max_batch_records - len(records)
            )
        except Exception as error:
            return await self._after_failure(error, records)
        return self._taken(more)

    async def _after_failure(
        self, error: Exception, polled: list[CommandRecord]
    ) -> list[CommandRecord]:
        if isinstance(error, KafkaError) and not isinstance(error, CorruptRecordException):
            if polled:
                log.warning("topping up a batch failed", error=repr(error))
                return []
            raise error  # the caller retries
        return await self._read_unreadable(error)

    def _taken(self, polled: dict[TopicPartition, list[Any]]) -> list[CommandRecord]:
        records = [CommandRecord.of(r) for batch in polled.values() for r in batch]
        for record in records:
            self.polled_to[record.partition] = record.offset + 1
        for tp, batch in polled.items():
            if batch:
                self.lag.advance(tp, batch[-1].offset + 1)
        if records:
            self.answered_at = time.monotonic()
        return records

    async def _read_unreadable(self, error: Exception) -> list[CommandRecord]:
        """aiokafka could not parse what it fetched: see services/ledger/unreadable.py."""
        self.state.unreadable_batches += 1
        log.warning("a fetched record batch cannot be parsed; reading it here", error=repr(error))
        assignment = sorted(tp for tp in self.kafka.assignment() if tp.topic == self.topic)
        # Records the failed poll had drained are lost with it: every partition goes back.
        for tp in assignment:
            self.seek(tp.partition, await self._position_of(tp))
        for tp in assignment:
            start = self.polled_to[tp.partition]
            batches = await read_batches(self.kafka._client, tp, start)
            for number, batch in enumerate(batches):
                if not batch.aiokafka_cannot_parse():
                    continue
                records = [r for b in batches[: number + 1] for r in b.records if r.offset >= start]
                self.seek(tp.partition, batch.last_offset + 1)
                log.warning(
                    "read a record batch aiokafka cannot parse",
                    partition=tp.partition,
                    first_offset=batch.base_offset,
                    last_offset=batch.last_offset,
                )
                return records
        raise UnreadableBatchNotFound(repr(error))

    async def _position_of(self, tp: TopicPartition) -> int:
        """Where the consumer stands in `tp`: after the last record polled, else where it began."""
        if tp.partition in self.polled_to:
            return self.polled_to[tp.partition]
        committed = await self.kafka.committed(tp)
        if committed is None:
            committed = (await self.kafka.beginning_offsets([tp]))[tp]
        return int(committed)
