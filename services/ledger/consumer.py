"""The ledger's Kafka consumer: `credits.commands` in, events in PostgreSQL, replies out.

Records are read with a plain aiokafka consumer, as bytes (no framework parser runs before our
code: services/ledger/polling.py), and every record of a polled batch ends as exactly one of:
applied with a reply, refused with a reply, or dead-lettered with a reason. Every batch is
applied in ONE database transaction (services/ledger/batches.py) together with
- the events and receipts of its commands (LedgerService.handle_many),
- the partition positions it moves, behind a compare-and-set (infra/event_store/kafka_tables.py),
- the replies it produced (infra/event_store/kafka_tables.py).
Only then are replies sent (services/ledger/delivery.py), and offsets are committed to Kafka
once those replies are delivered (services/ledger/offsets.py). So:
- a crash after the database commit and before the Kafka commit redelivers records below the
  stored position: they are not applied again, and their stored replies are sent again;
- a consumer that lost a partition in a rebalance it has not noticed fails its transaction on
  the position check instead of applying records twice; on a rebalance it forgets the cached
  accounts of the partitions it lost, which another ledger may now write;
- bad records go to the DLQ (before the commit, so none is lost) and never stop a partition;
- PostgreSQL or Kafka going away is retried (infra/retry.retry) for as long as it lasts, the
  ledger reporting itself not ready meanwhile (services/ledger/health.py). Nothing is skipped,
  and a stop ends it within seconds whatever it is waiting for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)

from infra.event_store.recorder import CreditsPostgresRecorder
from infra.kafka_clients import MURMUR2_PARTITIONER, acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.retry import Stopped, retry
from infra.settings import Settings, Topic
from services.ledger.batches import BatchApplier
from services.ledger.delivery import ReplyPipeline, send_dead_letters
from services.ledger.health import Health, LedgerConsumerState
from services.ledger.offsets import Offsets
from services.ledger.polling import Poller, UnreadableBatchNotFound
from services.ledger.records import CommandRecord, Poison
from services.ledger.replies import ReplyTopics
from services.ledger.service import LedgerService

log = structlog.get_logger("credits.ledger")

__all__ = ["LedgerConsumer", "LedgerConsumerState"]

CONSUMER_GROUP = "credits-ledger"
# Records per batch, hence per database transaction: big enough to amortise the insert lock
# (DESIGN §7), small enough that a batch is decided in well under a second.
MAX_BATCH_RECORDS = 500
# Offsets go to Kafka this often, from a task of their own: a commit is a round trip to the
# group coordinator that no batch should wait on. A crash replays at most this much (plus the
# batch whose replies were on their way), and replays are answered from stored replies.
COMMIT_INTERVAL_SECONDS = 0.2
# An idle ledger asks Kafka for metadata this often, so that it says it is not ready while the
# broker is away even when no command comes.
KAFKA_CHECK_INTERVAL_SECONDS = 1.0
# Group membership (docs/ARCHITECTURE.md, "Fast failover"): a member is static (its
# `group.instance.id` is CREDITS_LEDGER_INSTANCE_ID), so a ledger restarted after a crash takes
# its partitions back at once, without waiting for its old session to expire. A member that
# does not come back loses its partitions after the session timeout; heartbeats every second
# let the others notice a rebalance within about a second.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000
# On a stop, the current step may finish this long before it is cancelled (a batch applied
# and committed is answered from its stored replies after a restart anyway).
STEP_GRACE_SECONDS = 1.0
# Bounds on each part of a clean stop: settling replies and committing offsets, then each
# client's stop. With the above: under 8 s, inside the runner's 10 s.
FINAL_COMMIT_SECONDS = 2.0
CLIENT_STOP_SECONDS = 2.0
# A rebalance waits at most this for the last batch's replies before committing its offsets.
REVOKE_COMMIT_SECONDS = 2.0
# A batch that failed in a way nothing foresaw is read again after this pause.
UNEXPECTED_FAILURE_PAUSE_SECONDS = 1.0
KAFKA_FAILURES: tuple[type[BaseException], ...] = (KafkaError, OSError, UnreadableBatchNotFound)
# PostgreSQL going away (or a conflict outlasting the service's own retries, or a schema an
# operator is fixing): retried until it works. Not DataError: that is PostgreSQL refusing the
# data of a record, which retrying cannot fix (services/ledger/batches.py).
DATABASE_FAILURES: tuple[type[BaseException], ...] = (
    InterfaceError,
    OperationalError,
    IntegrityError,
    InternalError,
    ProgrammingError,
    NotSupportedError,
)
T = TypeVar("T")


class LedgerConsumer:
    def __init__(
        self,
        settings: Settings,
        service: LedgerService,
        *,
        consumer_group: str | None = None,
        instance_id: str | None = None,
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
        self.dlq_topic = settings.topic(Topic.DLQ)
        self.state = LedgerConsumerState()
        self._health = Health(self.state)
        self._stop = asyncio.Event()
        instance = settings.ledger_instance_id if instance_id is None else instance_id
        # No linger: a batch's replies are handed over together, and a lingering producer would
        # add its wait to every command's reply time.
        self._producer = acknowledged_producer(settings, "credits-ledger", linger_ms=0)
        self._kafka: AIOKafkaConsumer = kafka_consumer(
            settings,
            client_id="credits-ledger",
            group_id=self.consumer_group,
            group_instance_id=instance or None,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_interval_ms=300_000,
        )
        self._poller = Poller(
            self._kafka,
            self.commands_topic,
            max_batch_records,
            self.state,
            group=self.consumer_group,
        )
        self._offsets = Offsets(self._kafka, self.commands_topic, recorder, self.consumer_group)
        self._pipeline = ReplyPipeline(
            self._producer,
            ReplyTopics(self._producer, settings.topic(Topic.REPLIES)),
            self._retry_kafka,
            self._delivered,
        )
        self._batches = BatchApplier(
            service,
            consumer_group=self.consumer_group,
            commands_topic=self.commands_topic,
            default_reply_topic=settings.topic(Topic.REPLIES),
            poller=self._poller,
            pipeline=self._pipeline,
            dead_letter=self._dead_letter,
            retry_database=self._retry_database,
            state=self.state,
        )
        # Moves on every rebalance: a batch that spanned one forgets what it cached since.
        self._generation = 0
        self._kafka_answered_at = 0.0

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        return self._kafka

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set, then stops within about 8 s whatever it was doing."""
        self._stop = stop
        self._health.phase("starting")
        consuming = asyncio.create_task(self._consume(), name="ledger-consume")
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not consuming.done():
                await asyncio.wait({consuming}, timeout=STEP_GRACE_SECONDS)
            if not consuming.done():
                consuming.cancel()
            with suppress(asyncio.CancelledError, Stopped):
                await consuming
        finally:
            stopping.cancel()
            if not consuming.done():
                consuming.cancel()
            await self._shut_down()

    async def _consume(self) -> None:
        await self._retry_kafka(self._producer.start, "connecting the producer to Kafka")
        self._kafka.subscribe([self.commands_topic], listener=_Rebalance(self))
        await self._retry_kafka(self._start_consumer, "connecting the consumer to Kafka")
        background = [
            asyncio.create_task(self._commit_until_stopped(), name="ledger-commit"),
            # Of its own: a commit or a delivery may wait on Kafka as long as it is away.
            asyncio.create_task(self._watch_kafka(), name="ledger-kafka-watch"),
        ]
        self._health.phase("consuming")
        log.info("consuming", topic=self.commands_topic, group=self.consumer_group)
        try:
            while not self._stop.is_set():
                records = await self._retry_kafka(self._poller.poll, "polling Kafka")
                if records:
                    await self._apply(records)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def _shut_down(self) -> None:
        self._health.phase("stopped")
        await _bounded(self._commit_pending(), FINAL_COMMIT_SECONDS, "committing offsets")
        await _bounded(self._kafka.stop(), CLIENT_STOP_SECONDS, "stopping the consumer")
        await _bounded(self._producer.stop(), CLIENT_STOP_SECONDS, "stopping the producer")
        self._offsets.stop_pruning()

    async def _apply(self, records: list[CommandRecord]) -> None:
        """Applies a batch; on a failure nothing foresaw, reads it again after a pause."""
        generation = self._generation
        try:
            await self._batches.apply(records)
        except (Stopped, asyncio.CancelledError):
            raise
        except Exception as error:
            log.exception("a batch failed unexpectedly; it is read again", records=len(records))
            self.state.unexpected_failures += 1
            self._health.trouble("batch", f"a batch failed: {error!r}")
            self._poller.rewind(records)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), UNEXPECTED_FAILURE_PAUSE_SECONDS)
        else:
            self._health.clear("batch")
        if generation != self._generation:
            # A rebalance happened meanwhile: what this batch cached may not be ours any more.
            self._forget_partitions(self._all_partitions() - self._poller.assigned())

    # ------------------------------------------------------------------ Kafka I/O

    async def _dead_letter(self, poisons: list[Poison]) -> None:
        await self._retry_kafka(
            lambda: send_dead_letters(self._producer, self.dlq_topic, poisons), "sending to the DLQ"
        )

    def _delivered(self, ends: dict[int, int]) -> None:
        self._kafka_answered_at = time.monotonic()
        self._offsets.delivered(ends)

    async def _commit_until_stopped(self) -> None:
        """Commits delivered offsets every COMMIT_INTERVAL_SECONDS until the ledger stops.

        A delivery that failed is sent again here too: with no batch after it, nothing else
        would, and its senders would wait for replies until the next command came.
        """
        while not self._stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), COMMIT_INTERVAL_SECONDS)
            try:
                delivery = self._pipeline.current
                if delivery is not None and delivery.acknowledged.done():
                    await self._pipeline.settle()
                await self._offsets.commit()
            except (Stopped, asyncio.CancelledError):
                return
            except Exception:
                log.exception("committing offsets failed; trying again")

    async def _watch_kafka(self) -> None:
        """Says whether Kafka answers: it answered lately (records, acknowledgements), or it
        answers a metadata request now. Replies waiting for acknowledgements say nothing by
        themselves while the broker is away, and an idle ledger sends nothing."""
        while not self._stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), KAFKA_CHECK_INTERVAL_SECONDS)
            answered_at = max(self._kafka_answered_at, self._poller.answered_at)
            if time.monotonic() - answered_at < KAFKA_CHECK_INTERVAL_SECONDS:
                self._health.clear("kafka")
                continue
            try:
                async with asyncio.timeout(self.settings.kafka_request_timeout_seconds):
                    await self._producer.client.fetch_all_metadata()
            except (TimeoutError, KafkaError, OSError) as error:
                self._health.trouble("kafka", f"Kafka does not answer: {error!r}")
                continue
            self._kafka_answered_at = time.monotonic()
            self._health.clear("kafka")

    async def _start_consumer(self) -> None:
        # aiokafka's start() makes its fetcher and group coordinator before it waits for the
        # group's assignment, and asserts on a second call: a start that failed after that point
        # (Kafka gone while joining) is not called again; the coordinator keeps joining by
        # itself, so waiting for the assignment finishes the start.
        if getattr(self._kafka, "_fetcher", None) is None:
            await self._kafka.start()
        else:
            await self._kafka._subscription.wait_for_assignment()

    async def _commit_pending(self) -> None:
        """On a clean stop or a rebalance: what was applied and answered need not be replayed."""
        await self._pipeline.settle()
        await self._offsets.commit()

    # ------------------------------------------------------------------ retrying

    async def _retry_kafka(self, attempt: Callable[[], Awaitable[T]], doing: str) -> T:
        return await retry(
            attempt,
            doing=doing,
            retry_on=KAFKA_FAILURES,
            stop=self._stop,
            on_state=self._health.on_state(doing),
        )

    async def _retry_database(self, attempt: Callable[[], Awaitable[T]], doing: str) -> T:
        failed = False

        async def attempt_when_it_answers() -> T:
            nonlocal failed
            if failed:
                # Not through the pool while the server is away (its reconnection backoff
                # grows to minutes): once the server answers, broken connections are replaced.
                if not await asyncio.to_thread(self.recorder.server_answers):
                    raise OperationalError("PostgreSQL does not accept connections")
                await asyncio.to_thread(self.recorder.drop_broken_connections)
            try:
                return await attempt()
            except DATABASE_FAILURES:
                failed = True
                raise

        return await retry(
            attempt_when_it_answers,
            doing=doing,
            retry_on=DATABASE_FAILURES,
            stop=self._stop,
            on_state=self._health.on_state(doing),
        )

    # ------------------------------------------------------------------ rebalances

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1
        # The next owner starts from the committed offsets: the fewer it replays, the better.
        await _bounded(self._commit_pending(), REVOKE_COMMIT_SECONDS, "committing on a rebalance")
        partitions = {tp.partition for tp in revoked if tp.topic == self.commands_topic}
        # Another ledger may write their accounts now: what is cached of them would go stale.
        self._forget_partitions(partitions)
        self._batches.forget(partitions)
        self._poller.forget(partitions)
        self._offsets.forget(partitions)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._generation += 1
        # Positions are read again before the next batch (not here: a database outage must not
        # hold up the whole group's rebalance).
        self._batches.forget(set())
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    def _all_partitions(self) -> set[int]:
        return set(self._kafka.partitions_for_topic(self.commands_topic) or ())

    def _forget_partitions(self, partitions: set[int]) -> None:
        """Drops cached accounts whose commands come through these partitions (key: account id)."""
        all_partitions = sorted(self._all_partitions())
        if not partitions or not all_partitions:
            return
        app = self.service.app
        forgotten = [
            account_id
            for account_id in app.cached_account_ids()
            if MURMUR2_PARTITIONER(account_id.encode(), all_partitions, all_partitions)
            in partitions
        ]
        app.forget(forgotten)
        log.info("forgot cached accounts", partitions=sorted(partitions), accounts=len(forgotten))


async def _bounded(work: Awaitable[Any], seconds: float, doing: str) -> None:
    """Runs `work` for at most `seconds`: a stop must not hang on a server that is away."""
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        log.warning("gave up waiting", doing=doing, seconds=seconds)
    except Exception as error:
        log.warning("failed while stopping", doing=doing, error=repr(error))


class _Rebalance(ConsumerRebalanceListener):
    """Revoked partitions: offsets committed, cached accounts forgotten. Assigned ones: their
    stored positions are read before the next batch. Consumption itself resumes from Kafka's
    committed offset (or the earliest record): records between it and the stored position are
    recognised as applied, and their stored replies are sent again."""

    def __init__(self, ledger: LedgerConsumer) -> None:
        self.ledger = ledger

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.ledger._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.ledger._on_assigned(assigned)
