"""What must hold after the outages, read from the servers themselves.

- relay: every stored event on `credits.events` exactly once after dedupe by id, and per account
  in stream order (first occurrences; a batch published again repeats events, never reorders);
- projector: each read model equals the fold of the events (rebuilt from the log, checksums
  compared with the live tables the projector kept through the outages);
- scheduler: expire commands sent after each outage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import ConsumerRecord, TopicPartition
from psycopg.sql import SQL, Identifier

from infra.event_store.env import event_store_env
from infra.event_store.recorder import CreditsPostgresRecorder
from infra.kafka_clients import consumer as kafka_consumer
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from projections.read_side import open_read_side
from projections.rebuild import rebuild
from projections.store import positions
from services.relay.relay import FOLLOWER_NAME as RELAY
from services.scheduler.scheduler import FOLLOWER_NAME as SCHEDULER

READ_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class StoredEvents:
    head: int  # the last notification id
    by_account: dict[str, list[int]]  # account -> versions, in store order
    # account -> versions of its allocation events (each also published as `credits.granted`)
    allocations: dict[str, set[int]]


def stored_events(settings: Settings) -> StoredEvents:
    app = LedgerApplication(env=event_store_env(settings))
    try:
        recorder = app.recorder
        assert isinstance(recorder, CreditsPostgresRecorder)
        table = recorder.events_table_name
        with psycopg.connect(settings.pg_dsn()) as conn:
            rows = conn.execute(
                SQL(
                    "SELECT notification_id, originator_id, originator_version, topic FROM {} "
                    "ORDER BY notification_id"
                ).format(Identifier(table))
            ).fetchall()
    finally:
        app.close()
    by_account: dict[str, list[int]] = {}
    allocations: dict[str, set[int]] = {}
    for _, account, version, topic in rows:
        by_account.setdefault(account, []).append(version)
        if topic.endswith((".AllocationGranted", ".Renewed")):
            allocations.setdefault(account, set()).add(version)
    head = rows[-1][0] if rows else 0
    return StoredEvents(head=head, by_account=by_account, allocations=allocations)


def follower_positions(settings: Settings) -> dict[str, int]:
    """Where the relay and the scheduler are in the notification log."""
    app = LedgerApplication(env=event_store_env(settings))
    try:
        recorder = app.recorder
        assert isinstance(recorder, CreditsPostgresRecorder)
        return {name: recorder.select_follower_position(name) for name in (RELAY, SCHEDULER)}
    finally:
        app.close()


async def projection_positions(settings: Settings) -> dict[str, int]:
    async with open_read_side(settings) as read_side, read_side.pool.acquire() as conn:
        return await positions(conn, list(read_side.projections))


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its end now, in (partition, offset) order."""
    consumer = kafka_consumer(settings, client_id="credits-fault-checks", group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        ends = await consumer.end_offsets(assignment)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for part in batch.values():
                    records.extend(part)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class RelayOutcome:
    published: int  # records on the topic
    distinct: int  # records after dedupe by id: every event, and every allocation's view


async def check_relay(settings: Settings, stored: StoredEvents) -> RelayOutcome:
    records = await read_topic(settings, settings.topic(Topic.EVENTS))
    seen: dict[str, dict[str, Any]] = {}
    first_order: dict[str, list[int]] = {}
    views: dict[str, set[int]] = {}
    for record in records:
        event = json.loads(record.value or b"")
        assert record.key == event["subject"].encode(), "keyed by account"
        if event["id"] in seen:
            assert seen[event["id"]] == event, "a repeat is the same event"
            continue
        seen[event["id"]] = event
        subject, version = event["subject"], int(event["sequence"])
        if event["id"].endswith(":granted"):
            # An allocation's `credits.granted` view: right after its fact, first time round.
            assert event["type"] == "credits.granted", event["id"]
            assert first_order[subject][-1] == version, f"{event['id']}: after its fact"
            views.setdefault(subject, set()).add(version)
            continue
        first_order.setdefault(subject, []).append(version)
    published = {subject: sorted(sequences) for subject, sequences in first_order.items()}
    assert published == stored.by_account, "every stored event published, nothing else"
    for subject, sequences in first_order.items():
        assert sequences == stored.by_account[subject], f"{subject}: stream order"
    assert views == stored.allocations, "one credits.granted per allocation event"
    return RelayOutcome(published=len(records), distinct=len(seen))


async def check_read_models(settings: Settings) -> list[str]:
    """Rebuilds every read model from the log; each must match what the projector kept."""
    matched = []
    async with open_read_side(settings) as read_side:
        for name, projection in read_side.projections.items():
            result = await rebuild(read_side.pool, read_side.log, projection)
            assert result.matches, (
                f"{name}: live {result.live_checksum} != rebuilt {result.rebuilt_checksum}"
            )
            matched.append(name)
    return matched


def scheduler_expiries(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[float]:
    """When the scheduler's expire commands were written (seconds since the epoch)."""
    times = []
    for record in records:
        try:
            command = json.loads(record.value or b"")
        except ValueError:
            continue
        if str(command.get("command_id", "")).startswith("scheduler:expire:"):
            times.append(record.timestamp / 1000)
    return times
