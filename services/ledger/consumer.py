"""The ledger's Kafka consumer: `credits.commands` in, events in PostgreSQL, replies out.

Every batch of records is applied in ONE database transaction together with
- the events and receipts of its commands (LedgerService.handle_many),
- the partition positions it moves, behind a compare-and-set (infra/event_store.KafkaPosition),
- the replies it produced (infra/event_store.StoredReply).
Only then are replies sent, and offsets are committed to Kafka once those replies are delivered.
So:
- a crash after the database commit and before the Kafka commit redelivers records below the
  stored position: they are not applied again, and their stored replies are sent again;
- a consumer that lost a partition in a rebalance it has not noticed fails its transaction on
  the position check instead of applying records twice;
- bad records go to the DLQ (before the commit, so none is lost) and never stop a partition;
- a database or broker that stays down past a bounded retry stops consumption: partitions are
  rewound to the first unapplied record and paused, and `ready` says why. Nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from eventsourcing.persistence import PersistenceError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from domain.replies import Reply
from infra.event_store import (
    CreditsPostgresRecorder,
    KafkaPosition,
    KafkaPositionConflict,
    StoredReply,
)
from infra.kafka_clients import acknowledged_producer
from infra.metrics import COMMANDS, DLQ_MESSAGES, LEDGER_BATCH_RECORDS, LEDGER_BATCH_SECONDS
from infra.readiness import READINESS
from infra.settings import Settings, Topic
from services.ledger.records import CommandRecord, Decoded, Poison, decode, reply_topic
from services.ledger.service import LedgerService

log = structlog.get_logger("credits.ledger")

CONSUMER_GROUP = "credits-ledger"
# Records per batch, hence per database transaction: big enough to amortise the insert lock
# (DESIGN §7), small enough that a batch is decided in well under a second.
MAX_BATCH_RECORDS = 500
# How long a poll waits when nothing is there (it returns at once when records are). FastStream
# also sleeps this long after an empty poll, so a record arriving then waits up to twice this:
# after a stall upstream, that wait landed in the p99 at 10 ms. At 5 ms an idle ledger polls
# ~100 times a second and uses ~3% of a core (measured: 2% at 10 ms).
POLL_TIMEOUT_MS = 5
# How long a batch that has room waits for records fetched right after it was polled.
TOP_UP_WAIT_MS = 1
# Offsets go to Kafka this often, from a task of their own: they are advisory (PostgreSQL holds
# the positions), and a commit is a round trip to the group coordinator that no batch should
# wait on. A crash replays at most this much (plus the batch whose replies were on their way),
# and replays are recognised and answered from stored replies.
COMMIT_INTERVAL_SECONDS = 0.2
# Transient failures (database restarting, broker leader moving) are retried this often,
# doubling the pause from the first: 63.5 s of pauses, so a restart or failover of about a
# minute is ridden out (each attempt fails fast, or within one connect timeout: see
# CreditsPostgresRecorder.insert_events); past that the consumer stops and says so.
MAX_TRANSIENT_ATTEMPTS = 8
FIRST_RETRY_PAUSE_SECONDS = 0.5
# Stored replies below the offsets committed to Kafka are deleted this often, in the
# background: a batch never waits for the delete (it took ~40 ms after a burst).
PRUNE_INTERVAL_SECONDS = 10.0

T = TypeVar("T")


class ConsumerHalted(Exception):
    """Consumption stopped on purpose: retrying longer would only hide an outage."""


@dataclass
class LedgerConsumerState:
    ready: bool = False
    reason: str = "not started"
    batches: int = 0
    commands_by_status: dict[str, int] = field(default_factory=dict)
    dlq_records: int = 0
    replies_resent: int = 0


@dataclass
class _Delivery:
    """One batch's replies on their way to Kafka, and the offsets to commit once they are there.

    A batch does not wait for its replies' acknowledgements (a broker round trip, ~30% of a
    batch at 500 commands/s): it hands them to the producer and the next batch is applied
    meanwhile. That next batch settles this delivery before handing over its own replies, so
    replies still leave in the order their commands were applied, and a failed delivery is
    sent again (with the bounded retry) before anything after it.
    """

    replies: list[StoredReply]
    ends: dict[int, int]  # partition -> next offset: the batch's records, applied and answered
    acknowledged: asyncio.Future[Any]


class LedgerConsumer:
    def __init__(
        self,
        settings: Settings,
        service: LedgerService,
        *,
        consumer_group: str | None = None,
        max_batch_records: int = MAX_BATCH_RECORDS,
    ) -> None:
        assert 1 <= max_batch_records <= 1000
        recorder = service.app.recorder
        assert isinstance(recorder, CreditsPostgresRecorder), "the ledger needs PostgreSQL"
        self.settings = settings
        self.service = service
        self.recorder = recorder
        # Prefixed like the topics: a group is one coordinator-wide name, and members of other
        # deployments (staging, test runs) sharing it would rebalance each other for nothing.
        self.consumer_group = consumer_group or f"{settings.topic_prefix}{CONSUMER_GROUP}"
        self.commands_topic = settings.topic(Topic.COMMANDS)
        self.default_reply_topic = settings.topic(Topic.REPLIES)
        self.dlq_topic = settings.topic(Topic.DLQ)
        self.max_batch_records = max_batch_records
        self.state = LedgerConsumerState()
        # partition -> next offset to apply, as stored in PostgreSQL (the source of truth).
        self._positions: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        # Offsets applied and replied to but not yet committed to Kafka.
        self._uncommitted: dict[int, int] = {}
        # The last batch's replies, while the producer delivers them (see `_Delivery`).
        self._delivery: _Delivery | None = None
        # One commit at a time: the periodic one, and those on a rebalance or a stop.
        self._commit_lock = asyncio.Lock()
        # Held from settling one delivery to starting the next, by a batch or a stop: whoever
        # settles the last batch's replies hands over the next ones only after they arrived.
        self._replies_in_order = asyncio.Lock()
        self._last_prune = time.monotonic()
        self._pruning: asyncio.Task[None] | None = None
        # Set once consumption stopped on purpose; every later batch is rewound, not applied.
        self._halted: str | None = None
        # No linger: a batch's replies are handed over together, and a lingering producer would
        # add its wait to every command's reply time.
        self._producer = acknowledged_producer(settings, "credits-ledger", linger_ms=0)
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            client_id="credits-ledger",
            # FastStream logs every batch; ours are structured and say what matters.
            logger=logging.getLogger("faststream.ledger"),
            log_level=logging.DEBUG,
        )
        self._subscriber = self.broker.subscriber(
            self.commands_topic,
            group_id=self.consumer_group,
            batch=True,
            max_records=max_batch_records,
            batch_timeout_ms=POLL_TIMEOUT_MS,
            # Offsets are committed by hand, after the database commit (DESIGN §8).
            ack_policy=AckPolicy.MANUAL,
            # The ledger sends its replies itself. Left on, FastStream answers a record's
            # `reply_to` with the handler's return value: an empty record carrying the sender's
            # correlation id, which a client waiting for a reply would take for the answer.
            no_reply=True,
            auto_offset_reset="earliest",
            listener=_PositionListener(self),
            max_poll_interval_ms=300_000,
            session_timeout_ms=30_000,
        )
        self._subscriber(self._on_batch)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self._set_ready(False, "starting")
        await self._producer.start()
        try:
            await self.broker.start()
            self._set_ready(True, "consuming")
            log.info("consuming", topic=self.commands_topic, group=self.consumer_group)
            await self._commit_until(stop)
        finally:
            self._set_ready(False, "stopped")
            await self._commit_pending()
            if self._pruning is not None:
                await self._pruning
            await self.broker.stop()
            await self._producer.stop()

    def _set_ready(self, ready: bool, reason: str) -> None:
        self.state.ready, self.state.reason = ready, reason
        READINESS.report("ledger", ready=ready, detail=reason)

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        consumer = self._subscriber.consumer
        assert consumer is not None
        return consumer

    async def load_positions(self) -> None:
        self._positions = await asyncio.to_thread(
            self.recorder.select_kafka_positions, self.consumer_group, self.commands_topic
        )

    # ------------------------------------------------------------------ one batch

    async def _on_batch(self, message: KafkaMessage) -> None:
        records = [CommandRecord.of(r) for r in message.raw_message]
        if not records:
            return
        if self._halted is not None:
            await self._halt(records, self._halted)
            return
        if len(records) < self.max_batch_records:
            records += await self._top_up(self.max_batch_records - len(records))
        try:
            await self._apply(records)
        except ConsumerHalted as error:
            await self._halt(records, str(error))

    async def _top_up(self, room: int) -> list[CommandRecord]:
        """What reached the broker while the last batch was applied, waited for briefly.

        aiokafka fetches a partition again only once its buffered records are taken, and the
        poll that took them is the one this batch came from: without this, a record that
        arrives while a batch is applied waits for the whole next batch too (at 500 commands/s
        this halves the median command → reply time).
        """
        more = await self._consumer.getmany(timeout_ms=TOP_UP_WAIT_MS, max_records=room)
        return [CommandRecord.of(r) for records in more.values() for r in records]

    async def _apply(self, records: list[CommandRecord]) -> None:
        replayed = [r for r in records if r.offset < self._positions.get(r.partition, -1)]
        fresh = [r for r in records if r.offset >= self._positions.get(r.partition, -1)]
        outgoing: list[StoredReply] = []
        if replayed:
            outgoing += await self._stored_replies_of(replayed)
        if fresh:
            try:
                outgoing += await self._apply_fresh(fresh)
            except KafkaPositionConflict as conflict:
                # Someone else applied these: reread where partitions stand and let the next
                # poll deliver them again, as replayed records.
                log.warning("position moved under us; rereading", detail=str(conflict))
                await self._retry(self.load_positions, "reading positions")
                self._rewind(records)
                return
        self.state.batches += 1
        with LEDGER_BATCH_SECONDS.labels(phase="reply").time():
            async with self._replies_in_order:
                await self._settle_delivery()
                self._delivery = await self._deliver(outgoing, _ends(records))

    async def _apply_fresh(self, fresh: list[CommandRecord]) -> list[StoredReply]:
        decoded = [decode(r) for r in fresh]
        poisons = [d for d in decoded if isinstance(d, Poison)]
        commands = [d for d in decoded if isinstance(d, Decoded)]
        if poisons:
            # Before the database commit: a crash after it must not lose a DLQ record.
            await self._retry(lambda: self._send_to_dlq(poisons), "sending to the DLQ")
        positions = self._next_positions(fresh)

        def keep_replies(replies: list[Reply]) -> dict[str, Any]:
            return {"kafka_replies": self._stored_replies(commands, replies, poisons)}

        LEDGER_BATCH_RECORDS.observe(len(fresh))
        started = time.perf_counter()

        async def handle_here() -> list[Reply]:
            # On this loop's thread, blocking it for the batch: nothing else runs on the
            # ledger's loop (the runner gives it a thread of its own), and handing batches to a
            # worker thread made them ~40% slower, the GIL passing back and forth between the
            # worker and the Kafka client on every database round trip.
            return self.service.handle_many(
                [d.command for d in commands],
                save_with_replies=keep_replies,
                kafka_positions=positions,
                single_attempt=True,  # retried by `_retry`, the loop answering in between
            )

        replies = await self._retry(handle_here, "applying commands")
        LEDGER_BATCH_SECONDS.labels(phase="apply").observe(time.perf_counter() - started)
        for position in positions:
            self._positions[position.partition] = position.next_offset
        self._count(replies, poisons)
        # Sent with their positions now; a resend after a crash carries the stored copy.
        return self._stored_replies(commands, replies, poisons)

    def _next_positions(self, fresh: list[CommandRecord]) -> list[KafkaPosition]:
        last_offsets: dict[int, int] = {}
        for record in fresh:
            last_offsets[record.partition] = max(
                record.offset, last_offsets.get(record.partition, -1)
            )
        return [
            KafkaPosition(
                consumer_group=self.consumer_group,
                topic=self.commands_topic,
                partition=partition,
                expected_offset=self._positions.get(partition),
                next_offset=last + 1,
            )
            for partition, last in sorted(last_offsets.items())
        ]

    def _stored_replies(
        self, commands: list[Decoded], replies: list[Reply], poisons: list[Poison]
    ) -> list[StoredReply]:
        pairs: list[tuple[CommandRecord, Reply]] = [
            (d.record, reply) for d, reply in zip(commands, replies, strict=True)
        ]
        pairs += [(p.record, p.reply) for p in poisons if p.reply is not None]
        return [
            StoredReply(
                consumer_group=self.consumer_group,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reply_topic=reply_topic(record, self.default_reply_topic),
                key=reply.account_id.encode() if reply.account_id else record.key,
                value=reply.model_dump_json().encode(),
                correlation_id=record.header("correlation_id"),
            )
            for record, reply in sorted(pairs, key=lambda pair: pair[0].offset)
        ]

    async def _stored_replies_of(self, replayed: list[CommandRecord]) -> list[StoredReply]:
        """Records applied before (a crash, a rebalance): answered again from their stored copy."""
        by_partition: dict[int, list[int]] = {}
        for record in replayed:
            by_partition.setdefault(record.partition, []).append(record.offset)

        def read_stored() -> list[StoredReply]:
            return [
                reply
                for partition, offsets in sorted(by_partition.items())
                for reply in self.recorder.select_stored_replies(
                    self.consumer_group,
                    self.commands_topic,
                    partition,
                    min(offsets),
                    max(offsets) + 1,
                )
            ]

        stored = await self._retry(lambda: asyncio.to_thread(read_stored), "reading replies")
        self.state.replies_resent += len(stored)
        log.info(
            "redelivered records were applied already",
            records=len(replayed),
            replies_resent=len(stored),
        )
        return stored

    # ------------------------------------------------------------------ Kafka I/O

    async def _deliver(self, replies: list[StoredReply], ends: dict[int, int]) -> _Delivery:
        """Hands the replies to the producer; their acknowledgements are awaited later."""
        futures: list[asyncio.Future[Any]] = []
        try:
            for reply in replies:
                futures.append(await self._hand_over(reply))
        except (KafkaError, OSError) as error:
            # Those handed over may arrive or not; all are sent again, and a reply that comes
            # twice is matched by its correlation id like any redelivered one.
            asyncio.gather(*futures, return_exceptions=True)  # their outcome is not wanted
            log.warning("handing replies over failed; retrying", error=str(error))
            await self._retry(lambda: self._send(replies), "sending replies")
            futures = []
        acknowledged = asyncio.gather(*futures)
        delivery = _Delivery(replies=replies, ends=ends, acknowledged=acknowledged)

        def on_acknowledged(future: asyncio.Future[Any]) -> None:
            # Success makes the offsets committable at once; a failure is `_settle_delivery`'s.
            if not future.cancelled() and future.exception() is None:
                self._note_delivered(delivery.ends)

        acknowledged.add_done_callback(on_acknowledged)
        return delivery

    async def _settle_delivery(self) -> None:
        """Waits for the last batch's replies to be acknowledged, sending them again if lost."""
        delivery, self._delivery = self._delivery, None
        if delivery is None:
            return
        try:
            await delivery.acknowledged
        except (KafkaError, OSError) as error:
            log.warning("replies were not acknowledged; sending them again", error=str(error))
            await self._retry(lambda: self._send(delivery.replies), "sending replies")
            self._note_delivered(delivery.ends)

    def _note_delivered(self, ends: dict[int, int]) -> None:
        for partition, end in ends.items():
            self._uncommitted[partition] = max(end, self._uncommitted.get(partition, 0))

    async def _hand_over(self, reply: StoredReply) -> asyncio.Future[Any]:
        return await self._producer.send(
            reply.reply_topic,
            value=reply.value,
            key=reply.key,
            headers=[]
            if reply.correlation_id is None
            else [("correlation_id", reply.correlation_id)],
        )

    async def _send(self, replies: list[StoredReply]) -> None:
        await asyncio.gather(*[await self._hand_over(reply) for reply in replies])

    async def _send_to_dlq(self, poisons: list[Poison]) -> None:
        futures = [
            await self._producer.send(
                self.dlq_topic,
                value=p.record.value,
                key=p.record.key,
                headers=[
                    ("error.code", p.dlq_code.encode()),
                    ("error.message", p.message.encode()[:1000]),
                    ("source.topic", p.record.topic.encode()),
                    ("source.partition", str(p.record.partition).encode()),
                    ("source.offset", str(p.record.offset).encode()),
                ],
            )
            for p in poisons
        ]
        await asyncio.gather(*futures)
        for p in poisons:
            log.warning(
                "sent to the DLQ",
                code=p.dlq_code,
                message=p.message,
                partition=p.record.partition,
                offset=p.record.offset,
            )

    async def _commit_until(self, stop: asyncio.Event) -> None:
        """Commits delivered offsets every COMMIT_INTERVAL_SECONDS until `stop` is set.

        A delivery that failed is sent again here too: with no batch after it, nothing else
        would, and its senders would wait for replies until the next command came.
        """
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), COMMIT_INTERVAL_SECONDS)
            delivery = self._delivery
            if delivery is not None and delivery.acknowledged.done():
                try:
                    async with self._replies_in_order:
                        await self._settle_delivery()
                except ConsumerHalted as error:
                    # Its offsets stay uncommitted: a restart answers them from stored replies.
                    self._stop_consuming(str(error))
            await self._commit_delivered()

    async def _commit_delivered(self) -> None:
        consumer = self._subscriber.consumer
        if not self._uncommitted or consumer is None:
            return
        async with self._commit_lock:
            ends, self._uncommitted = self._uncommitted, {}
            offsets = {TopicPartition(self.commands_topic, p): end for p, end in ends.items()}
            # Advisory: PostgreSQL holds the truth. A failed commit only means more replays.
            try:
                with LEDGER_BATCH_SECONDS.labels(phase="commit").time():
                    await consumer.commit(offsets)
            except KafkaError as error:
                log.warning("offset commit failed; records will be replayed", error=str(error))
                return
            self._committed.update(ends)
        now = time.monotonic()
        if now - self._last_prune >= PRUNE_INTERVAL_SECONDS and (
            self._pruning is None or self._pruning.done()
        ):
            self._last_prune = now
            self._pruning = asyncio.create_task(self._prune(dict(self._committed)))

    async def _commit_pending(self) -> None:
        """On a clean stop or a rebalance: what was applied and answered need not be replayed."""
        if self._halted is not None:
            return
        try:
            async with self._replies_in_order:
                await self._settle_delivery()
        except ConsumerHalted as error:
            log.warning("replies of the last batch were not delivered", error=str(error))
            return
        await self._commit_delivered()

    async def _prune(self, committed: dict[int, int]) -> None:
        try:
            for partition, below_offset in sorted(committed.items()):
                await asyncio.to_thread(
                    self.recorder.prune_stored_replies,
                    self.consumer_group,
                    self.commands_topic,
                    partition,
                    below_offset,
                )
        except PersistenceError as error:
            # Housekeeping: the replies stay until the next prune, nothing else is affected.
            log.warning("pruning stored replies failed", error=str(error))

    # ------------------------------------------------------------------ failures

    async def _retry(self, attempt: Callable[[], Awaitable[T]], doing: str) -> T:
        pause_seconds = FIRST_RETRY_PAUSE_SECONDS
        for number in range(1, MAX_TRANSIENT_ATTEMPTS + 1):
            try:
                return await attempt()
            except KafkaPositionConflict:
                raise
            except (PersistenceError, KafkaError, OSError) as error:
                if number == MAX_TRANSIENT_ATTEMPTS:
                    raise ConsumerHalted(f"{doing} failed {number} times: {error}") from error
                log.warning(
                    "transient failure; retrying", doing=doing, attempt=number, error=str(error)
                )
                if isinstance(error, PersistenceError):
                    await asyncio.to_thread(self.recorder.drop_broken_connections)
                await asyncio.sleep(pause_seconds)
                pause_seconds *= 2
        raise AssertionError("unreachable")

    def _rewind(self, records: list[CommandRecord]) -> None:
        firsts: dict[int, int] = {}
        for record in records:
            firsts[record.partition] = min(
                record.offset, firsts.get(record.partition, record.offset)
            )
        for partition, offset in firsts.items():
            self._consumer.seek(TopicPartition(self.commands_topic, partition), offset)

    async def _halt(self, records: list[CommandRecord], reason: str) -> None:
        self._rewind(records)
        self._stop_consuming(reason)

    def _stop_consuming(self, reason: str) -> None:
        """Every later batch is rewound, not applied (see `_on_batch`)."""
        self._halted = reason
        self._consumer.pause(*self._consumer.assignment())
        self._set_ready(False, f"halted: {reason}")
        log.error(
            "consumption stopped; nothing was skipped. Fix the cause, then restart the ledger",
            reason=reason,
        )

    def _count(self, replies: list[Reply], poisons: list[Poison]) -> None:
        statuses = [reply.status for reply in replies] + ["rejected"] * len(poisons)
        for status in statuses:
            self.state.commands_by_status[status] = self.state.commands_by_status.get(status, 0) + 1
            COMMANDS.labels(status=status, via="kafka").inc()
        for poison in poisons:
            DLQ_MESSAGES.labels(code=poison.dlq_code).inc()
        self.state.dlq_records += len(poisons)


def _ends(records: list[CommandRecord]) -> dict[int, int]:
    """Partition -> the offset after the last of these records: where consumption resumes."""
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(record.offset + 1, ends.get(record.partition, 0))
    return ends


class _PositionListener(ConsumerRebalanceListener):
    """On every assignment, the stored positions are read again: PostgreSQL is the truth.

    Consumption itself resumes from Kafka's committed offset (or the earliest record): records
    between it and the stored position are recognised as applied, and their stored replies are
    sent again. Seeking straight to the stored position would skip exactly those replies.
    """

    def __init__(self, ledger: LedgerConsumer) -> None:
        self.ledger = ledger

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # The next owner starts from the committed offsets: the fewer it replays, the better.
        await self.ledger._commit_pending()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.ledger._retry(self.ledger.load_positions, "reading positions")
        except ConsumerHalted as error:
            # Without the stored positions nothing can be applied safely: the first batch
            # will be rewound and consumption paused.
            self.ledger._halted = str(error)
            return
