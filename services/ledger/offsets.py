"""Offsets the ledger commits to Kafka, and the stored replies they make unnecessary.

Committed offsets are advisory: PostgreSQL holds each partition's position, and a record
below it that Kafka delivers again is answered from its stored reply. They only say where a
restarted (or new) owner of a partition starts reading, so the fewer records it replays, the
better, and a failed commit only means more replays.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from eventsourcing.persistence import PersistenceError

from infra.metrics import LEDGER_BATCH_SECONDS

log = structlog.get_logger("credits.ledger")

# Stored replies below the offsets committed to Kafka are deleted this often, in the
# background: a batch never waits for the delete (it took ~40 ms after a burst).
PRUNE_INTERVAL_SECONDS = 10.0


class Offsets:
    def __init__(
        self, kafka: AIOKafkaConsumer, topic: str, recorder: Any, consumer_group: str
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.recorder = recorder
        self.consumer_group = consumer_group
        self.committed: dict[int, int] = {}
        # Offsets applied and replied to but not yet committed to Kafka.
        self.uncommitted: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._failing = False
        self._last_prune = time.monotonic()
        self._pruning: asyncio.Task[None] | None = None

    def delivered(self, ends: dict[int, int]) -> None:
        """These records are applied and their replies acknowledged: committable."""
        for partition, end in ends.items():
            self.uncommitted[partition] = max(end, self.uncommitted.get(partition, 0))

    def forget(self, partitions: set[int]) -> None:
        """Partitions no longer ours: their offsets are the next owner's to commit."""
        for partition in partitions:
            self.committed.pop(partition, None)
            self.uncommitted.pop(partition, None)

    async def commit(self) -> None:
        if not self.uncommitted:
            return
        assigned = {tp.partition for tp in self.kafka.assignment() if tp.topic == self.topic}
        async with self._lock:
            ends = {p: end for p, end in self.uncommitted.items() if p in assigned}
            offsets = {TopicPartition(self.topic, p): end for p, end in ends.items()}
            try:
                if offsets:
                    with LEDGER_BATCH_SECONDS.labels(phase="commit").time():
                        await self.kafka.commit(offsets)
            except KafkaError as error:
                if not self._failing:
                    log.warning("offset commits fail; records will be replayed", error=repr(error))
                self._failing = True
                return
            if self._failing:
                log.info("offset commits work again")
            self._failing = False
            self.uncommitted = {}
            self.committed.update(ends)
        self._maybe_prune()

    def stop_pruning(self) -> None:
        if self._pruning is not None and not self._pruning.done():
            self._pruning.cancel()

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune >= PRUNE_INTERVAL_SECONDS and (
            self._pruning is None or self._pruning.done()
        ):
            self._last_prune = now
            self._pruning = asyncio.create_task(self._prune(dict(self.committed)))

    async def _prune(self, committed: dict[int, int]) -> None:
        try:
            for partition, below_offset in sorted(committed.items()):
                await asyncio.to_thread(
                    self.recorder.prune_stored_replies,
                    self.consumer_group,
                    self.topic,
                    partition,
                    below_offset,
                )
        except PersistenceError as error:
            # Housekeeping: the replies stay until the next prune, nothing else is affected.
            log.warning("pruning stored replies failed", error=str(error))
