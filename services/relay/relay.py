"""The outbox relay: every event of the event store's notification log to `credits.events`.

The notification log is the outbox: an event is in it exactly when its transaction committed,
in commit order, so the relay needs no table of its own but its position. It publishes a batch,
waits for Kafka's acknowledgements, and only then saves the position: at least once, in stream
order per account (the idempotent producer keeps order through retries). A relay killed between
the two publishes the batch again; consumers dedupe by the CloudEvent `id`.

Exactly one relay publishes at a time: it holds a PostgreSQL advisory lock on a connection of its
own. Others wait, trying again now and then, and take over when that connection goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import structlog
from aiokafka.errors import KafkaError
from eventsourcing.persistence import Notification, PersistenceError

from domain.account import Account
from infra.event_store import CreditsPostgresRecorder
from infra.kafka_clients import acknowledged_producer
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from services.relay.cloud_events import CONTENT_TYPE, cloud_event, encode

log = structlog.get_logger("credits.relay")

FOLLOWER_NAME = "relay:credits.events"
# Any fixed 64-bit number works; this one is "credits" in ASCII, so it is easy to recognise in
# pg_locks.
ADVISORY_LOCK_KEY = 0x63726564697473
MAX_BATCH_EVENTS = 500
# Idle polls back off to this, so an idle relay costs a query every quarter second at most.
MAX_IDLE_POLL_SECONDS = 0.25
STANDBY_RETRY_SECONDS = 2.0
# A database or broker outage: retried with a growing pause, then the relay exits (its process
# supervisor restarts it) rather than looping forever in silence.
MAX_CONSECUTIVE_FAILURES = 8
MAX_FAILURE_PAUSE_SECONDS = 30.0


@dataclass
class RelayState:
    active: bool = False
    position: int = 0
    published: int = 0


class OutboxRelay:
    def __init__(self, settings: Settings, app: LedgerApplication) -> None:
        recorder = app.recorder
        assert isinstance(recorder, CreditsPostgresRecorder), "the relay reads PostgreSQL"
        self.settings = settings
        self.app = app
        self.recorder = recorder
        self.topic = settings.topic(Topic.EVENTS)
        self.state = RelayState()
        self._producer = acknowledged_producer(settings, "credits-relay", linger_ms=2)

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await self._relay_or_stand_by(stop)
                    failures = 0
                except (KafkaError, PersistenceError, psycopg.Error, OSError) as error:
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_FAILURES:
                        raise
                    pause_seconds = min(2.0**failures, MAX_FAILURE_PAUSE_SECONDS)
                    log.warning(
                        "relay failed; retrying",
                        error=str(error),
                        attempt=failures,
                        pause_seconds=pause_seconds,
                    )
                    await _wait(stop, pause_seconds)
        finally:
            await self._producer.stop()

    async def _relay_or_stand_by(self, stop: asyncio.Event) -> None:
        lock = await asyncio.to_thread(self._try_lock)
        if lock is None:
            await _wait(stop, STANDBY_RETRY_SECONDS)
            return
        try:
            await self._relay_while_holding(lock, stop)
        finally:
            self.state.active = False
            await asyncio.to_thread(lock.close)

    def _try_lock(self) -> psycopg.Connection[tuple[object, ...]] | None:
        settings = self.settings
        conn = psycopg.connect(
            settings.pg_dsn(),
            autocommit=True,
            connect_timeout=int(settings.pg_connect_timeout_seconds),
        )
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        if row is None or row[0] is not True:
            conn.close()
            return None
        return conn

    async def _relay_while_holding(
        self, lock: psycopg.Connection[tuple[object, ...]], stop: asyncio.Event
    ) -> None:
        self.state.position = await asyncio.to_thread(
            self.recorder.select_follower_position, FOLLOWER_NAME
        )
        self.state.active = True
        log.info("relaying", topic=self.topic, from_position=self.state.position)
        idle_seconds = 0.01
        while not stop.is_set():
            # The lock lives as long as its connection: check it before publishing anything.
            await asyncio.to_thread(lock.execute, "SELECT 1")
            batch = await asyncio.to_thread(
                self.recorder.select_notifications,
                self.state.position + 1,
                MAX_BATCH_EVENTS,
            )
            if not batch:
                await _wait(stop, idle_seconds)
                idle_seconds = min(idle_seconds * 2, MAX_IDLE_POLL_SECONDS)
                continue
            idle_seconds = 0.01
            await self.publish(batch)
            await self.save_position(batch[-1].id)

    async def publish(self, batch: Sequence[Notification]) -> None:
        futures = []
        for notification in batch:
            event = self.app.mapper.to_domain_event(notification)
            assert isinstance(event, Account.Event), type(event)
            futures.append(
                await self._producer.send(
                    self.topic,
                    key=str(event.originator_id).encode(),
                    value=encode(cloud_event(event)),
                    headers=[("content-type", CONTENT_TYPE)],
                )
            )
        await asyncio.gather(*futures)
        self.state.published += len(batch)

    async def save_position(self, position: int) -> None:
        await asyncio.to_thread(self.recorder.save_follower_position, FOLLOWER_NAME, position)
        self.state.position = position


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
