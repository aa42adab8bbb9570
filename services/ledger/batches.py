"""One polled batch of records: decided, saved in one transaction, its replies handed over.

Every record ends as exactly one of: applied with a reply, refused with a reply, or
dead-lettered with a reason. The batch's partition positions are saved with it behind a
compare-and-set, and never move past a record the batch did not hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from eventsourcing.persistence import DataError, PersistenceError

from domain.errors import ErrorCode, LedgerError
from domain.replies import Reply
from infra.dlq import DlqCode
from infra.event_store.batch_writes import BatchWrites
from infra.event_store.kafka_tables import KafkaPosition, KafkaPositionConflict, StoredReply
from infra.metrics import LEDGER_BATCH_RECORDS, LEDGER_BATCH_SECONDS
from services.ledger.command_spans import CommandSpans
from services.ledger.delivery import ReplyPipeline
from services.ledger.health import LedgerConsumerState
from services.ledger.outcomes import answered
from services.ledger.polling import Poller
from services.ledger.records import CommandRecord, Decoded, Poison, decode, reply_topic
from services.ledger.service import LedgerService

log = structlog.get_logger("credits.ledger")

T = TypeVar("T")
# Longer correlation ids are not echoed (clients use UUIDs: 32 to 36 bytes).
MAX_CORRELATION_ID_BYTES = 1024
RetryDatabase = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


class PositionMoved(Exception):
    """Another consumer applied records of a partition of this batch: read positions again."""


class RecordFault(Exception):
    """Applying these commands failed in a way that retrying cannot fix."""


class BatchApplier:
    def __init__(
        self,
        service: LedgerService,
        *,
        consumer_group: str,
        commands_topic: str,
        default_reply_topic: str,
        poller: Poller,
        pipeline: ReplyPipeline,
        dead_letter: Callable[[list[Poison]], Awaitable[None]],
        retry_database: RetryDatabase,
        state: LedgerConsumerState,
    ) -> None:
        self.service = service
        recorder: Any = service.app.recorder
        self.recorder = recorder
        self.consumer_group = consumer_group
        self.commands_topic = commands_topic
        self.default_reply_topic = default_reply_topic
        self.poller = poller
        self.pipeline = pipeline
        self.dead_letter = dead_letter
        self.retry_database = retry_database
        self.state = state
        # partition -> next offset to apply, as stored in PostgreSQL (the source of truth);
        # None until read again after a rebalance or a position conflict.
        self.positions: dict[int, int] | None = None
        # partition -> (stored position, first offset polled) of a gap already read again once.
        self._gaps: dict[int, tuple[int, int]] = {}
        # After a database failure, attempts run on a worker thread so the loop stays free.
        self._database_failing = False

    def forget(self, partitions: set[int]) -> None:
        """After a rebalance: positions are read again, gaps checked afresh."""
        self.positions = None
        for partition in partitions:
            self._gaps.pop(partition, None)

    async def apply(self, records: list[CommandRecord]) -> None:
        if self.positions is None:
            self.positions = await self.retry_database(self._read_positions, "reading positions")
        positions = self.positions
        records = self._without_gaps(records, positions)
        replayed = [r for r in records if r.offset < positions.get(r.partition, -1)]
        fresh = [r for r in records if r.offset >= positions.get(r.partition, -1)]
        outgoing: list[StoredReply] = []
        if replayed:
            outgoing += await self._stored_replies_of(replayed)
        if fresh:
            try:
                outgoing += await self._apply_fresh(fresh, positions)
            except PositionMoved as moved:
                # Someone else applied these: read where partitions stand, and let the next
                # poll deliver them again, as replayed records.
                log.warning("position moved under us; reading positions again", detail=str(moved))
                self.positions = None
                self.poller.rewind(records)
                return
        self.state.batches += 1
        with LEDGER_BATCH_SECONDS.labels(phase="reply").time():
            await self.pipeline.hand_over(outgoing, _ends(records))

    def _without_gaps(
        self, records: list[CommandRecord], positions: dict[int, int]
    ) -> list[CommandRecord]:
        """Records of a partition whose first is past the stored position are read again.

        The stored position must only move past records this ledger decided. A poll starting
        beyond it means records in between were never seen here: the partition is read again
        from the stored position. If the same gap comes back, the offsets hold no records
        (transaction markers, retention) and the records are taken.
        """
        firsts: dict[int, int] = {}
        for record in records:
            stored = positions.get(record.partition)
            if stored is not None and record.offset >= stored:
                firsts[record.partition] = min(record.offset, firsts.get(record.partition, 1 << 62))
        for partition, first in firsts.items():
            stored = positions[partition]
            if first <= stored or self._gaps.get(partition) == (stored, first):
                continue
            self._gaps[partition] = (stored, first)
            log.warning(
                "records were skipped; reading the partition again from the stored position",
                partition=partition,
                stored_position=stored,
                first_polled=first,
            )
            self.poller.seek(partition, stored)
            records = [r for r in records if r.partition != partition]
        return records

    async def _apply_fresh(
        self, fresh: list[CommandRecord], stored: dict[int, int]
    ) -> list[StoredReply]:
        decoded = [decode(r) for r in fresh]
        poisons = [d for d in decoded if isinstance(d, Poison)]
        if poisons:
            # Before the database commit: a crash after it must not lose a DLQ record.
            await self.dead_letter(poisons)
        return await self._apply_decoded(decoded, stored)

    async def _apply_decoded(
        self, decoded: list[Decoded | Poison], stored: dict[int, int]
    ) -> list[StoredReply]:
        """One transaction for these records; a command that makes it fail for good is found
        by halving, dead-lettered, and the rest applied (in order, so positions stay exact).

        `stored` is the positions this batch started from (a rebalance meanwhile drops
        `self.positions`; the compare-and-set then tells whether they still hold)."""
        commands = [d for d in decoded if isinstance(d, Decoded)]
        poisons = [d for d in decoded if isinstance(d, Poison)]
        positions = self._next_positions([d.record for d in decoded], stored)

        spans = CommandSpans(commands)
        # The JSON of the replies as last decided: each reply is serialised once, for its
        # receipt, its stored copy and what is sent (the last with its position filled in).
        decided_json: list[str] = []
        # The stored copies as last decided: what is sent is the same, positions filled in.
        saved: list[StoredReply] = []

        def keep_replies(replies: list[Reply], texts: list[str]) -> BatchWrites:
            decided_json[:] = texts
            copies = self._stored_replies(commands, replies, texts, poisons, spans)
            saved[:] = copies
            return BatchWrites(kafka_replies=copies)

        writes = BatchWrites(
            kafka_positions=positions,
            # Saved with the receipts: the relay puts them in the events' CloudEvents.
            command_traces=spans.traceparents,
            single_attempt=True,  # retried here, the loop answering in between
        )

        def handle() -> list[Reply]:
            try:
                return self.service.handle_many(
                    [d.command for d in commands], save_with_replies=keep_replies, writes=writes
                )
            except KafkaPositionConflict as conflict:
                raise PositionMoved(str(conflict)) from conflict
            except DataError as error:
                raise RecordFault(f"PostgreSQL refused the data: {error}") from error
            except PersistenceError:
                raise
            except Exception as error:
                raise RecordFault(f"{type(error).__name__}: {error}") from error

        async def attempt() -> list[Reply]:
            if not self._database_failing:
                # On the loop's thread, blocking it for the batch: nothing else runs on the
                # ledger's loop (the runner gives it a thread of its own), and handing batches
                # to a worker thread made them ~40% slower, the GIL passing back and forth
                # between the worker and the Kafka client on every database round trip.
                try:
                    return handle()
                except PersistenceError:
                    self._database_failing = True
                    raise
            # During an outage an attempt may wait a connect timeout: not on the loop's thread.
            replies = await asyncio.to_thread(handle)
            self._database_failing = False
            return replies

        LEDGER_BATCH_RECORDS.observe(len(decoded))
        started = time.perf_counter()
        try:
            replies: list[Reply] = await self.retry_database(attempt, "applying commands")
        except RecordFault as fault:
            spans.end(commands, None, fault)
            return await self._isolate(decoded, commands, fault, stored)
        except BaseException as error:
            spans.end(commands, None, error)
            raise
        LEDGER_BATCH_SECONDS.labels(phase="apply").observe(time.perf_counter() - started)
        for position in positions:
            stored[position.partition] = position.next_offset
        self._count(commands, replies, poisons, spans)
        spans.end(commands, replies)
        # Sent with their positions now; a resend after a crash carries the stored copy.
        positioned = {
            (d.record.partition, d.record.offset): sent
            for d, text, reply in zip(commands, decided_json, replies, strict=True)
            if (sent := _with_position(text, reply)) != text
        }
        return [
            copy._replace(value=positioned[key].encode())
            if (key := (copy.partition, copy.offset)) in positioned
            else copy
            for copy in saved
        ]

    async def _isolate(
        self,
        decoded: list[Decoded | Poison],
        commands: list[Decoded],
        fault: RecordFault,
        stored: dict[int, int],
    ) -> list[StoredReply]:
        if len(commands) > 1:
            half = len(decoded) // 2
            first = await self._apply_decoded(decoded[:half], stored)
            return first + await self._apply_decoded(decoded[half:], stored)
        if not commands:
            raise fault  # nothing left to blame: the consumer reads the batch again
        bad = commands[0]
        log.error("a command cannot be applied; it goes to the DLQ", error=str(fault))
        message = f"the ledger cannot apply this command: {fault}"
        poison = Poison(
            record=bad.record,
            dlq_code=DlqCode.UNPROCESSABLE,
            message=message,
            reply=Reply.rejected(
                command_id=bad.command.command_id,
                account_id=bad.command.account_id,
                error=LedgerError(ErrorCode.invalid_command, message[:1000]),
            ),
        )
        await self.dead_letter([poison])
        return await self._apply_decoded([poison if d is bad else d for d in decoded], stored)

    def _next_positions(
        self, records: list[CommandRecord], stored: dict[int, int]
    ) -> list[KafkaPosition]:
        last_offsets: dict[int, int] = {}
        for record in records:
            last_offsets[record.partition] = max(
                record.offset, last_offsets.get(record.partition, -1)
            )
        return [
            KafkaPosition(
                consumer_group=self.consumer_group,
                topic=self.commands_topic,
                partition=partition,
                expected_offset=stored.get(partition),
                next_offset=last + 1,
            )
            for partition, last in sorted(last_offsets.items())
        ]

    def _stored_replies(
        self,
        commands: list[Decoded],
        replies: list[Reply],
        texts: list[str],
        poisons: list[Poison],
        spans: CommandSpans,
    ) -> list[StoredReply]:
        """`texts`: each reply's JSON, in the order of `replies`."""
        pairs: list[tuple[CommandRecord, Reply, str]] = [
            (d.record, reply, text) for d, reply, text in zip(commands, replies, texts, strict=True)
        ]
        pairs += [
            (p.record, p.reply, p.reply.model_dump_json()) for p in poisons if p.reply is not None
        ]
        return [
            StoredReply(
                consumer_group=self.consumer_group,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reply_topic=reply_topic(record, self.default_reply_topic),
                # Keyed by account like the command; a refusal without one needs no key (and
                # echoing a record's key could make the reply larger than Kafka takes).
                key=reply.account_id.encode() if reply.account_id else None,
                value=text.encode(),
                correlation_id=_echoed(record.header("correlation_id")),
                traceparent=spans.traceparent(record.partition, record.offset),
            )
            for record, reply, text in sorted(pairs, key=lambda pair: pair[0].offset)
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

        stored: list[StoredReply] = await self.retry_database(
            lambda: asyncio.to_thread(read_stored), "reading stored replies"
        )
        self.state.replies_resent += len(stored)
        log.info(
            "redelivered records were applied already",
            records=len(replayed),
            replies_resent=len(stored),
        )
        return stored

    async def _read_positions(self) -> dict[int, int]:
        positions: dict[int, int] = await asyncio.to_thread(
            self.recorder.select_kafka_positions, self.consumer_group, self.commands_topic
        )
        return positions

    def _count(
        self,
        commands: list[Decoded],
        replies: list[Reply],
        poisons: list[Poison],
        spans: CommandSpans,
    ) -> None:
        statuses = [reply.status for reply in replies] + ["rejected"] * len(poisons)
        for status in statuses:
            self.state.commands_by_status[status] = self.state.commands_by_status.get(status, 0) + 1
        self.state.dlq_records += len(poisons)
        answered(
            [
                *(
                    (
                        d.record,
                        d.command.type,
                        reply,
                        spans.trace_id(d.record.partition, d.record.offset),
                    )
                    for d, reply in zip(commands, replies, strict=True)
                ),
                *((p.record, "invalid", p.reply, None) for p in poisons),
            ]
        )


# How a reply's JSON ends before its position is known (the field comes last in `Reply`).
_NO_POSITION_SUFFIX = ',"position":null}'


def _with_position(text: str, reply: Reply) -> str:
    """The JSON of `reply`, from that of the same reply before it had a position: the same
    text as `reply.model_dump_json()`, without serialising it again."""
    if reply.position is None:
        return text
    if not text.endswith(_NO_POSITION_SUFFIX):
        return reply.model_dump_json()  # the reply's fields changed order: no shortcut
    return f"{text[: -len('null}')]}{reply.position}}}"


def _echoed(correlation_id: bytes | None) -> bytes | None:
    """The sender's correlation id, unless too long to send back (a reply must always fit)."""
    if correlation_id is None or len(correlation_id) > MAX_CORRELATION_ID_BYTES:
        return None
    return correlation_id


def _ends(records: list[CommandRecord]) -> dict[int, int]:
    """Partition -> the offset after the last of these records: where consumption resumes."""
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(record.offset + 1, ends.get(record.partition, 0))
    return ends
