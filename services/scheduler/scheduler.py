"""The scheduler: sends the time-driven commands that are due (DESIGN §5).

It follows the notification log and keeps, per account, the next moment time alone changes it
(`Account.next_due_at`: a hold or lot expiring, a period ending, a scheduled plan change). When
that moment passes it sends an `expire` command to `credits.commands`, keyed by account. The
ledger's catch-up is idempotent — renewals are per period, expiries per hold and lot — so a
scheduler running twice, late, or firing again after a lost command does no harm; and a command
that reaches an account first catches it up anyway. Renewals need no `renew` of their own here:
`expire` renews every period that has ended (Stripe's `invoice.paid` still sends `renew`).

Outages (PostgreSQL or Kafka away) are retried with infra/retry.py for as long as they last; the
scheduler reports itself not ready meanwhile. A firing is marked in the due index only once
Kafka acknowledged its commands, so what an outage interrupted is sent again after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from aiokafka import AIOKafkaProducer

from domain.clock import Clock
from infra.event_store.recorder import CreditsPostgresRecorder
from infra.kafka_clients import acknowledged_producer, stop_producer
from infra.ledger_application import LedgerApplication
from infra.metrics import SCHEDULER_DUE, SCHEDULER_SENT
from infra.outages import KAFKA_OUTAGE, POSTGRES_OUTAGE
from infra.readiness import READINESS
from infra.retry import Stopped, retry, until_stopped
from infra.settings import Settings, Topic

log = structlog.get_logger("credits.scheduler")

COMPONENT = "scheduler"
FOLLOWER_NAME = "scheduler:due"
MAX_FOLLOW_EVENTS = 1000
MAX_FIRE_ACCOUNTS = 500
TICK_SECONDS = 1.0
# A fired command that changed nothing (lost, or rejected) is sent again after this.
REFIRE_AFTER_SECONDS = 60.0
# A producer still holding records after this many seconds is closed without them.
PRODUCER_STOP_SECONDS = 1.5


@dataclass
class SchedulerState:
    position: int = 0
    fired: int = 0


class Scheduler:
    def __init__(self, settings: Settings, app: LedgerApplication, clock: Clock) -> None:
        recorder = app.recorder
        assert isinstance(recorder, CreditsPostgresRecorder), "the scheduler reads PostgreSQL"
        self.settings = settings
        self.app = app
        self.recorder = recorder
        self.clock = clock
        self.topic = settings.topic(Topic.COMMANDS)
        self.state = SchedulerState()
        # Commands not acknowledged in this time are sent again, on a fresh producer.
        self.ack_timeout_seconds = settings.kafka_request_timeout_seconds
        # Started when something is first due: a broker outage only matters to a firing.
        self._producer: AIOKafkaProducer | None = None
        self._producer_failed = False
        self._following = False

    async def run(self, stop: asyncio.Event) -> None:
        """Ticks until `stop`; outages are waited out (not ready meanwhile), never fatal."""
        READINESS.register(COMPONENT)
        try:
            while not stop.is_set():
                busy = await retry(
                    lambda: until_stopped(self.tick(), stop, "scheduling"),
                    doing="scheduling",
                    retry_on=(*POSTGRES_OUTAGE, *KAFKA_OUTAGE),
                    stop=stop,
                    on_state=READINESS.reporter(COMPONENT),
                    before_retry=self._reset,
                )
                READINESS.report(COMPONENT, ready=True, detail="following the event store")
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=TICK_SECONDS)
        except Stopped:
            pass
        finally:
            READINESS.report(COMPONENT, ready=False, detail="stopped")
            if self._producer is not None:
                await stop_producer(self._producer, within_seconds=PRODUCER_STOP_SECONDS)

    async def tick(self) -> bool:
        """Follows new events, then fires what is due. True if more is waiting."""
        if not self._following:
            self.state.position = await asyncio.to_thread(
                self.recorder.select_follower_position, FOLLOWER_NAME
            )
            self._following = True
            log.info("scheduling", from_position=self.state.position)
        followed = await asyncio.to_thread(self.follow)
        fired = await self.fire()
        return followed >= MAX_FOLLOW_EVENTS or fired >= MAX_FIRE_ACCOUNTS

    def follow(self) -> int:
        """Reads new events; stores the next due time of each account they touched."""
        batch = self.recorder.select_notifications_once(self.state.position + 1, MAX_FOLLOW_EVENTS)
        if not batch:
            return 0
        touched = {str(n.originator_id) for n in batch}
        accounts = self.app.stored_accounts(touched)
        due_at: dict[str, datetime | None] = {
            account_id: account.next_due_at() for account_id, account in accounts.items()
        }
        self.recorder.save_due_times(FOLLOWER_NAME, batch[-1].id, due_at)
        self.state.position = batch[-1].id
        return len(batch)

    async def fire(self) -> int:
        now = self.clock.now()
        due = await asyncio.to_thread(
            self.recorder.select_due,
            now,
            now - timedelta(seconds=REFIRE_AFTER_SECONDS),
            MAX_FIRE_ACCOUNTS,
        )
        SCHEDULER_DUE.set(len(due))
        if not due:
            return 0
        producer = await self._started_producer()
        self._producer_failed = True  # until every command is acknowledged
        futures = []
        for account_id, due_at in due:
            command = {
                "type": "expire",
                # Receipts are per account, so the account id need not be in it. Distinct per
                # firing: a retry after a refused expire must be decided afresh.
                "command_id": f"scheduler:expire:{due_at.isoformat()}:{int(now.timestamp())}",
                "account_id": account_id,
            }
            futures.append(
                await producer.send(
                    self.topic, key=account_id.encode(), value=json.dumps(command).encode()
                )
            )
        # A broker that is away does not fail the sends (the producer retries them): the
        # timeout is what tells the scheduler, and its readiness, that Kafka is not taking them.
        async with asyncio.timeout(self.ack_timeout_seconds):
            await asyncio.gather(*futures)
        self._producer_failed = False
        await asyncio.to_thread(self.recorder.mark_fired, due, now)
        SCHEDULER_SENT.inc(len(due))
        self.state.fired += len(due)
        return len(due)

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = acknowledged_producer(self.settings, "credits-scheduler")
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
            # Its records would pile up with each retry while the broker is away.
            producer, self._producer = self._producer, None
            await stop_producer(producer, within_seconds=PRODUCER_STOP_SECONDS)
        self._producer_failed = False
        # A restarted server leaves the pool's idle connections dead: test and replace them.
        with contextlib.suppress(*POSTGRES_OUTAGE):
            await asyncio.to_thread(self.recorder.drop_broken_connections)
