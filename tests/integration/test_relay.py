"""The outbox relay publishes every ledger event to Kafka as a CloudEvent, once after dedupe, and
an allocation event's `credits.granted` view right after it; `sequence` as a 20-digit string
(or, with CREDITS_CLOUDEVENTS_SEQUENCE=integer, contract 1.0's integer)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from contracts.asyncapi.cloud_events import cloud_event_adapter
from domain.account import Account
from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.kafka_topics import create_topics, delete_topics
from infra.ledger_application import LedgerApplication
from infra.readiness import READINESS
from infra.settings import Settings, Topic
from services.ledger.service import LedgerService, SystemClock
from services.relay.relay import ADVISORY_LOCK_KEY, OutboxRelay
from tests.databases import fresh_database
from tests.kafka_client import KafkaTestClient
from tests.kit.clock import SettableClock

pytestmark = pytest.mark.integration

CLOUD_EVENT = cloud_event_adapter()
DEMO = load_catalog(Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml")


@pytest.fixture
async def own(settings: Settings, pg_database: str) -> AsyncIterator[Settings]:
    """Topics and a database of this test's own: the relay reads the whole notification log."""
    suffix = uuid.uuid4().hex[:6]
    mine = settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}{suffix}.",
            "pg_database": f"{settings.pg_database}_{suffix}",
        }
    )
    with fresh_database(settings, mine.pg_database):
        await create_topics(mine)
        yield mine
        await delete_topics(mine, mine.all_topics())


@dataclass(frozen=True)
class History:
    events: int  # the notification log's head: every event stored so far
    views: int  # allocation events: each also published as a `credits.granted`

    @property
    def records(self) -> int:
        return self.events + self.views


def write_history(settings: Settings, accounts: int, spends: int, prefix: str = "relay") -> History:
    app = LedgerApplication(env=event_store_env(settings))
    service = LedgerService(app, DEMO, SystemClock())
    commands: list[dict[str, Any]] = []
    for n in range(accounts):
        account = f"{prefix}-{n}"
        commands.append(
            {"type": "open_account", "command_id": f"o{n}", "account_id": account, "plan": "pro"}
        )
        commands += [
            {
                "type": "consume",
                "command_id": f"c{n}-{i}",
                "account_id": account,
                "action": "lookup",
            }
            for i in range(spends)
        ]
    replies = service.handle_many(commands)
    assert {r.status for r in replies} == {"accepted"}
    total = app.recorder.max_notification_id() or 0
    views = sum(
        isinstance(e, Account.AllocationGranted)
        for n in range(accounts)
        for e in app.events.get(f"{prefix}-{n}")
    )
    app.close()
    return History(total, views)


def first_seen(received: list[Any]) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]]:
    """Each distinct record by id, and each account's stream versions in the order first seen,
    checking that a repeat is the same record and that a `credits.granted` view comes right
    after its fact (same subject and sequence)."""
    deduped: dict[str, dict[str, Any]] = {}
    per_account: dict[str, list[int]] = {}
    previous: dict[str, dict[str, Any]] = {}
    for message in sorted(received, key=lambda m: (m.partition, m.offset)):
        event = json.loads(message.value or b"")
        assert message.key == event["subject"].encode()
        assert dict(message.headers)["content-type"].startswith(b"application/cloudevents+json")
        assert isinstance(event["sequence"], str) and len(event["sequence"]) == 20
        if event["id"] in deduped:
            assert deduped[event["id"]] == event, "a redelivery is the same record"
        elif event["id"].endswith(":granted"):
            fact = previous[event["subject"]]
            assert event["id"] == fact["id"] + ":granted", "the view right after its fact"
            assert (event["type"], event["sequence"]) == ("credits.granted", fact["sequence"])
            assert fact["type"] in ("credits.allocation_granted", "credits.renewed")
        else:
            per_account.setdefault(event["subject"], []).append(int(event["sequence"]))
        deduped[event["id"]] = event
        previous[event["subject"]] = event
    return deduped, per_account


class KilledAfterPublishing(OutboxRelay):
    """Dies once after publishing a batch and before saving its position."""

    kills = 0

    async def save_position(self, position: int) -> None:
        if KilledAfterPublishing.kills == 0 and self.state.published >= 1:
            KilledAfterPublishing.kills += 1
            raise asyncio.CancelledError("killed between publishing and saving the position")
        await super().save_position(position)


async def run_until(relay: OutboxRelay, position: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        async with asyncio.timeout(60):
            while relay.state.position < position:
                if task.done():
                    task.result()
                    return
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait([task], timeout=30)


async def test_relay_killed_mid_stream_then_restarted_delivers_every_event_once_in_order(
    own: Settings, kafka: KafkaTestClient
) -> None:
    history = await asyncio.to_thread(write_history, own, 12, 60)
    total = history.events
    assert total > 500, "more than one batch, so the kill lands mid-stream"

    first_app = LedgerApplication(env=event_store_env(own))
    killed = KilledAfterPublishing(own, first_app)
    with pytest.raises(asyncio.CancelledError):
        await run_until(killed, total)
    assert killed.state.published >= 1 and killed.state.position < total
    first_app.close()

    second_app = LedgerApplication(env=event_store_env(own))
    await run_until(OutboxRelay(own, second_app), total)
    second_app.close()

    received = await kafka.read(
        own.topic(Topic.EVENTS), count=history.records + killed.state.records
    )
    deduped, per_account = first_seen(received)

    assert len(deduped) == history.records, "every event and every view, once after dedupe"
    assert sum(map(len, per_account.values())) == total
    assert len(received) > history.records, "the killed batch really was published twice"
    for sequences in per_account.values():
        assert sequences == list(range(1, len(sequences) + 1)), "stream order per account"
    sample = next(e for e in deduped.values() if e["type"] == "credits.consumed")
    assert sample["specversion"] == "1.0" and sample["source"] == "credits"
    assert sample["id"] == f"{sample['subject']}:{int(sample['sequence'])}"
    assert sample["data"]["amount"] == 1


async def eventually(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(60):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_relay_that_lost_its_lock_with_its_connection_publishes_nothing_until_it_holds_it(
    own: Settings, kafka: KafkaTestClient
) -> None:
    first = await asyncio.to_thread(write_history, own, 3, 5)
    total = first.events
    app = LedgerApplication(env=event_store_env(own))
    relay = OutboxRelay(own, app)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.state.position == total, "the relay caught up")
        with psycopg.connect(own.pg_dsn(), autocommit=True) as other:
            # As a database restart would, the server ends the session that held the lock;
            # another session (as another relay would) takes the lock as soon as it is free.
            assert relay._lock is not None
            other.execute("SELECT pg_terminate_backend(%s)", (relay._lock.info.backend_pid,))
            other.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            published = relay.state.published
            later = await asyncio.to_thread(write_history, own, 3, 5, "later")
            more = later.events
            await eventually(
                lambda: READINESS.snapshot()["relay"].detail.startswith("standing by"),
                "the relay noticed and stood by",
            )
            assert relay.state.published == published, "no lock, nothing published"
            assert relay.state.position == total and not relay.state.active
        # The lock is free again (its session closed): the relay takes it and goes on.
        await eventually(lambda: relay.state.position == more, "the relay took over again")
    finally:
        stop.set()
        await asyncio.wait([task], timeout=30)
        app.close()

    records = later.events + first.views + later.views
    received = await kafka.read(own.topic(Topic.EVENTS), count=records)
    deduped, per_account = first_seen(received)
    assert len(deduped) == records
    assert set(per_account) == {f"{prefix}-{n}" for prefix in ("relay", "later") for n in range(3)}
    assert sum(map(len, per_account.values())) == more, "every event, once after dedupe"
    for sequences in per_account.values():
        assert sequences == list(range(1, len(sequences) + 1)), "stream order per account"


@pytest.mark.parametrize("sequence", ["string", "integer"])
async def test_a_renewal_reaches_kafka_as_its_fact_then_credits_granted_with_its_source(
    own: Settings, kafka: KafkaTestClient, sequence: str
) -> None:
    mine = own.model_copy(update={"cloudevents_sequence": sequence})
    clock = SettableClock()
    app = LedgerApplication(env=event_store_env(mine))
    service = LedgerService(app, DEMO, clock)
    opened = service.handle(
        {"type": "open_account", "command_id": "o", "account_id": "renews", "plan": "pro"}
    )
    clock.advance(days=31)
    period_id = clock.now().date().isoformat()
    renewed = service.handle(
        {"type": "renew", "command_id": "r", "account_id": "renews", "period_id": period_id}
    )
    assert (opened.status, renewed.status) == ("accepted", "accepted"), renewed.error
    stored = list(app.events.get("renews"))
    renewals = [e for e in stored if isinstance(e, Account.Renewed)]
    assert renewals, "the renewal renewed something"
    views = sum(isinstance(e, Account.AllocationGranted) for e in stored)
    await run_until(OutboxRelay(mine, app), app.recorder.max_notification_id() or 0)
    app.close()

    received = await kafka.read(mine.topic(Topic.EVENTS), count=len(stored) + views)
    records = [
        json.loads(m.value or b"") for m in sorted(received, key=lambda m: (m.partition, m.offset))
    ]
    for renewal in renewals:
        (fact,) = [r for r in records if r["id"] == f"renews:{renewal.originator_version}"]
        view = records[records.index(fact) + 1]
        assert fact["type"] == "credits.renewed" and view["type"] == "credits.granted"
        assert view["id"] == fact["id"] + ":granted"
        assert view["data"]["source"] == "renewal"
        assert (view["data"]["lot_id"], view["data"]["amount"]) == (renewal.lot_id, renewal.amount)
        if sequence == "string":
            assert fact["sequence"] == view["sequence"] == f"{renewal.originator_version:020d}"
            CLOUD_EVENT.validate_json(json.dumps(view))
            CLOUD_EVENT.validate_json(json.dumps(fact))
        else:
            assert fact["sequence"] == view["sequence"] == renewal.originator_version
