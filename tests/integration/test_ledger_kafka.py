"""Commands through the real Kafka: each applied once, replies back, bad input to the DLQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import TopicPartition
from eventsourcing.persistence import OperationalError

from domain.account import Account
from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.kafka_topics import create_topics, delete_topics
from infra.ledger_application import LedgerApplication
from infra.metrics import COMPONENT_READY, REPLY_TO_FALLBACKS
from infra.readiness import READINESS
from infra.settings import Settings, Topic
from services.ledger import consumer as consumer_module
from services.ledger import offsets as offsets_module
from services.ledger.consumer import LedgerConsumer
from tests.kafka_client import KafkaTestClient, Received
from tests.ledger_harness import RunningLedger

pytestmark = pytest.mark.integration

DEMO = load_catalog(Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml")


@pytest.fixture
async def start_ledger(
    topics: Settings,
) -> AsyncIterator[Callable[..., Any]]:
    running: list[RunningLedger] = []

    async def start(
        consumer_class: type[LedgerConsumer] = LedgerConsumer, **options: Any
    ) -> RunningLedger:
        ledger = RunningLedger(topics, consumer_class, **options)
        await ledger.start()
        running.append(ledger)
        return ledger

    yield start
    for ledger in running:
        if ledger.task is not None and not ledger.task.done():
            await ledger.close()


def command(account_id: str, type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "command_id": uuid.uuid4().hex, "account_id": account_id, **fields}


async def send(kafka: KafkaTestClient, settings: Settings, body: dict[str, Any]) -> None:
    await kafka.produce(
        settings.topic(Topic.COMMANDS),
        body["account_id"],
        json.dumps(body).encode(),
        headers=[("correlation_id", body["command_id"].encode())],
    )


def by_correlation(replies: list[Received]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for reply in replies:
        correlation_id = dict(reply.headers)["correlation_id"].decode()
        found.setdefault(correlation_id, []).append(json.loads(reply.value or b""))
    return found


def stored_events(settings: Settings, account_id: str) -> list[Account.Event]:
    reader = LedgerApplication(env={**event_store_env(settings), "AGGREGATE_CACHE_MAXSIZE": "0"})
    try:
        return [e for e in reader.events.get(account_id) if isinstance(e, Account.Event)]
    finally:
        reader.close()


async def test_a_plain_kafka_producer_gets_replies_in_order_per_account(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    await start_ledger()
    accounts = [f"order-{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    sent: dict[str, list[str]] = {account: [] for account in accounts}
    for account in accounts:
        opened = command(account, "open_account", plan="pro")
        await send(kafka, topics, opened)
        sent[account].append(opened["command_id"])
    for _ in range(10):
        for account in accounts:
            spend = command(account, "consume", action="lookup", quantity=1)
            await send(kafka, topics, spend)
            sent[account].append(spend["command_id"])

    replies = by_correlation(await kafka.read(topics.topic(Topic.REPLIES), count=33))

    for account in accounts:
        bodies = [replies[command_id][0] for command_id in sent[account]]
        assert [b["status"] for b in bodies] == ["accepted"] * 11
        available = [b["balances"]["credits"]["available"] for b in bodies]
        # Applied in the order sent: each lookup takes exactly one credit from the one before.
        assert available[1:] == [available[0] - n for n in range(1, 11)]


async def test_the_same_command_sent_five_times_applies_once(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    await start_ledger()
    account = f"dup-{uuid.uuid4().hex[:6]}"
    await send(kafka, topics, command(account, "open_account", plan="pro"))
    spend = command(account, "consume", action="generate", quantity=1)
    for _ in range(5):
        await send(kafka, topics, spend)

    replies = by_correlation(await kafka.read(topics.topic(Topic.REPLIES), count=6))

    statuses = [r["status"] for r in replies[spend["command_id"]]]
    assert sorted(statuses) == ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]
    results = {json.dumps(r["result"], sort_keys=True) for r in replies[spend["command_id"]]}
    assert len(results) == 1, "a duplicate carries the original result"
    consumed = [e for e in stored_events(topics, account) if isinstance(e, Account.Consumed)]
    assert len(consumed) == 1


async def test_a_malformed_record_goes_to_the_dlq_and_the_rest_are_applied(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    await start_ledger()
    account = f"dlq-{uuid.uuid4().hex[:6]}"
    await send(kafka, topics, command(account, "open_account", plan="pro"))
    good = [command(account, "consume", action="upload", quantity=1) for _ in range(100)]
    for body in good[:50]:
        await send(kafka, topics, body)
    bad_partition, bad_offset = await kafka.produce(
        topics.topic(Topic.COMMANDS), account, b"\x00not json at all{", headers=[]
    )
    for body in good[50:]:
        await send(kafka, topics, body)

    dead = await kafka.read(topics.topic(Topic.DLQ), count=1)
    replies = by_correlation(await kafka.read(topics.topic(Topic.REPLIES), count=101))

    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert dead[0].value == b"\x00not json at all{"
    assert headers["error.code"] == b"invalid_json"
    assert b"Invalid JSON" in headers["error.message"]
    assert headers["source.topic"] == topics.topic(Topic.COMMANDS).encode()
    assert (headers["source.partition"], headers["source.offset"]) == (
        str(bad_partition).encode(),
        str(bad_offset).encode(),
    )
    assert all(replies[b["command_id"]][0]["status"] == "accepted" for b in good)
    consumed = [e for e in stored_events(topics, account) if isinstance(e, Account.Consumed)]
    assert len(consumed) == 100


class CrashAfterDatabaseCommit(LedgerConsumer):
    """Dies right after its first batch commits to PostgreSQL: no reply sent, no offset commit."""

    crashed = asyncio.Event()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        apply_fresh = self._batches._apply_fresh

        async def crash_after(fresh: Any, stored: Any) -> Any:
            if self.crashed.is_set():
                raise asyncio.CancelledError  # a dead process applies nothing more
            await apply_fresh(fresh, stored)
            self.crashed.set()
            raise asyncio.CancelledError  # killed between the database commit and the rest

        self._batches._apply_fresh = crash_after  # type: ignore[method-assign]


async def test_a_crash_after_the_database_commit_loses_no_reply_and_applies_nothing_twice(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    account = f"crash-{uuid.uuid4().hex[:6]}"
    opened = command(account, "open_account", plan="pro")
    spends = [command(account, "consume", action="lookup", quantity=1) for _ in range(20)]
    for body in [opened, *spends]:
        await send(kafka, topics, body)
    first = await start_ledger(CrashAfterDatabaseCommit)
    async with asyncio.timeout(30):
        await CrashAfterDatabaseCommit.crashed.wait()
    await first.close()
    applied_before_restart = len(stored_events(topics, account))
    assert applied_before_restart > 0, "the first batch was committed to PostgreSQL"

    second = await start_ledger()
    replies = by_correlation(await kafka.read(topics.topic(Topic.REPLIES), count=21))

    assert set(replies) == {opened["command_id"], *(s["command_id"] for s in spends)}
    for body in [opened, *spends]:
        assert {r["status"] for r in replies[body["command_id"]]} == {"accepted"}
    events = stored_events(topics, account)
    assert sum(isinstance(e, Account.Consumed) for e in events) == 20
    assert sum(isinstance(e, Account.Opened) for e in events) == 1
    # The records the first consumer applied came again and were answered from stored replies.
    assert second.consumer.state.replies_resent >= 1
    assert sum(second.consumer.state.commands_by_status.values()) < 21


class DatabaseDown(LedgerConsumer):
    """Its database fails every write until `back` is set, as during an outage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.back = asyncio.Event()
        self.failed_attempts = 0
        handle_many = self.service.handle_many

        def failing(*args: Any, **kwargs: Any) -> Any:
            if not self.back.is_set():
                self.failed_attempts += 1
                raise OperationalError("connection refused (simulated outage)")
            return handle_many(*args, **kwargs)

        self.service.handle_many = failing  # type: ignore[method-assign]


async def test_a_database_outage_is_retried_until_it_ends_and_skips_nothing(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    account = f"outage-{uuid.uuid4().hex[:6]}"
    bodies = [command(account, "open_account", plan="pro")]
    bodies += [command(account, "consume", action="lookup", quantity=1) for _ in range(5)]
    for body in bodies:
        await send(kafka, topics, body)

    down = await start_ledger(DatabaseDown)
    async with asyncio.timeout(30):
        while down.consumer.state.ready or down.consumer.failed_attempts < 5:
            await asyncio.sleep(0.05)

    # Not ready, saying why, and still trying: no halt, nothing applied, nothing skipped.
    assert down.consumer.state.reason.startswith("applying commands: OperationalError")
    assert READINESS.snapshot()["ledger"].ready is False
    assert COMPONENT_READY.labels(component="ledger")._value.get() == 0
    assert stored_events(topics, account) == []

    down.consumer.back.set()
    replies = by_correlation(await kafka.read(topics.topic(Topic.REPLIES), count=len(bodies)))
    assert all(replies[b["command_id"]][0]["status"] == "accepted" for b in bodies)
    assert sum(isinstance(e, Account.Consumed) for e in stored_events(topics, account)) == 5
    async with asyncio.timeout(10):
        while not down.consumer.state.ready:
            await asyncio.sleep(0.05)
    assert down.consumer.state.reason == "consuming"
    assert COMPONENT_READY.labels(component="ledger")._value.get() == 1


class FirstRepliesLost(LedgerConsumer):
    """The replies of its first batch are never acknowledged, as when the broker times out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        send_one = self._pipeline._send_one
        lost_once: set[int] = set()

        async def losing_the_first_batch(outgoing: Any) -> Any:
            offset = outgoing.reply.offset
            if self.state.batches == 1 and offset not in lost_once:
                lost_once.add(offset)
                lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                lost.set_exception(KafkaTimeoutError())
                return lost
            return await send_one(outgoing)

        self._pipeline._send_one = losing_the_first_batch  # type: ignore[method-assign]


async def test_replies_never_acknowledged_are_sent_again_before_later_ones(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    ledger = await start_ledger(FirstRepliesLost)
    account = f"lost-{uuid.uuid4().hex[:6]}"
    first = [command(account, "open_account", plan="pro")]
    first += [command(account, "consume", action="lookup", quantity=1) for _ in range(4)]
    for body in first:
        await send(kafka, topics, body)
    async with asyncio.timeout(20):
        while ledger.consumer.state.batches < 1:
            await asyncio.sleep(0.01)
    later = [command(account, "consume", action="lookup", quantity=1) for _ in range(5)]
    for body in later:
        await send(kafka, topics, body)

    received = await kafka.read(topics.topic(Topic.REPLIES), count=10)

    # One partition (the account's key): each reply once, in the order the commands were sent,
    # the first batch's (sent again) before any later one.
    order = [dict(r.headers)["correlation_id"].decode() for r in received]
    assert order == [b["command_id"] for b in first + later]
    assert {json.loads(r.value or b"")["status"] for r in received} == {"accepted"}


class AcknowledgementsHeld(LedgerConsumer):
    """Its replies are acknowledged only when the test says so."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = asyncio.Event()
        send_one = self._pipeline._send_one

        async def held(outgoing: Any) -> Any:
            sent = await send_one(outgoing)

            async def acknowledged() -> Any:
                result = await sent
                await self.release.wait()
                return result

            return asyncio.ensure_future(acknowledged())

        self._pipeline._send_one = held  # type: ignore[method-assign]


async def test_offsets_are_committed_only_once_the_replies_are_acknowledged(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    ledger = await start_ledger(AcknowledgementsHeld)
    consumer: LedgerConsumer = ledger.consumer
    account = f"held-{uuid.uuid4().hex[:6]}"
    await send(kafka, topics, command(account, "open_account", plan="pro"))
    await kafka.read(topics.topic(Topic.REPLIES), count=1)  # applied and sent, not acknowledged
    partitions = [TopicPartition(consumer.commands_topic, p) for p in range(4)]

    async def committed() -> list[int | None]:
        return [await consumer._consumer.committed(tp) for tp in partitions]

    await asyncio.sleep(consumer_module.COMMIT_INTERVAL_SECONDS * 3)
    assert await committed() == [None] * 4

    ledger.consumer.release.set()
    async with asyncio.timeout(10):
        while sorted(await committed(), key=lambda c: c or 0)[-1] != 1:
            await asyncio.sleep(0.05)
    assert sorted(await committed(), key=lambda c: c or 0) == [None, None, None, 1]


async def test_stored_replies_below_the_committed_offsets_are_pruned(
    topics: Settings,
    kafka: KafkaTestClient,
    start_ledger: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Commits every tick of the commit task (at 0 it would spin).
    monkeypatch.setattr(consumer_module, "COMMIT_INTERVAL_SECONDS", 0.01)
    monkeypatch.setattr(offsets_module, "PRUNE_INTERVAL_SECONDS", 0.0)
    ledger = await start_ledger()
    consumer: LedgerConsumer = ledger.consumer
    account = f"prune-{uuid.uuid4().hex[:6]}"
    await send(kafka, topics, command(account, "open_account", plan="pro"))
    for _ in range(20):
        await send(kafka, topics, command(account, "consume", action="lookup", quantity=1))
    await kafka.read(topics.topic(Topic.REPLIES), count=21)

    def kept() -> list[int]:
        return [
            reply.offset
            for partition in range(4)
            for reply in consumer.recorder.select_stored_replies(
                consumer.consumer_group, consumer.commands_topic, partition, 0, 10**9
            )
        ]

    async with asyncio.timeout(20):
        # Every batch after the first commits, and prunes what an earlier commit covered;
        # one more record moves the commit past the last batch.
        while len(kept()) > 1:
            await send(kafka, topics, command(account, "consume", action="lookup", quantity=1))
            await asyncio.sleep(0.2)
    assert consumer.state.commands_by_status.get("accepted", 0) >= 21


async def test_a_restarted_database_leaves_dead_connections_that_do_not_halt_the_ledger(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    """Connections are not pinged on checkout and the consumer makes single attempts: after a
    database restart the pool's dead connections must not keep it failing."""
    ledger = await start_ledger(as_in_production=True)  # the cached account is not read again
    consumer: LedgerConsumer = ledger.consumer
    account = f"restart-{uuid.uuid4().hex[:6]}"
    await send(kafka, topics, command(account, "open_account", plan="pro"))
    await kafka.read(topics.topic(Topic.REPLIES), count=1)

    pool = consumer.recorder.datastore.pool
    idle = [conn.info.backend_pid for conn in list(pool._pool)]  # the pool's idle connections
    assert len(idle) >= 2
    with psycopg.connect(topics.pg_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (idle,))

    spends = [command(account, "consume", action="lookup", quantity=1) for _ in range(3)]
    for body in spends:
        await send(kafka, topics, body)
    # The topic's replies from the start: the opening's, then the three spends'.
    replies = by_correlation(await kafka.read(topics.topic(Topic.REPLIES), count=4))
    assert [replies[b["command_id"]][0]["status"] for b in spends] == ["accepted"] * 3
    assert consumer.state.ready, consumer.state.reason


async def test_a_reply_to_a_missing_topic_is_answered_on_the_default_topic_and_counted(
    topics: Settings, kafka: KafkaTestClient, start_ledger: Callable[..., Any]
) -> None:
    ledger = await start_ledger()
    account = f"replyto-{uuid.uuid4().hex[:6]}"
    own_topic = f"{topics.topic_prefix}client-replies"
    missing_topic = f"{topics.topic_prefix}nobody-created-this"
    await create_topics(topics, [own_topic])
    fallbacks = REPLY_TO_FALLBACKS.labels(reason="unknown_topic")
    before = fallbacks._value.get()
    opened = command(account, "open_account", plan="pro")
    spend = command(account, "consume", action="lookup", quantity=1)
    for body, reply_to in [(opened, missing_topic), (spend, own_topic)]:
        await kafka.produce(
            topics.topic(Topic.COMMANDS),
            account,
            json.dumps(body).encode(),
            headers=[
                ("correlation_id", body["command_id"].encode()),
                ("reply_to", reply_to.encode()),
            ],
        )

    try:
        (fallen_back,) = await kafka.read(topics.topic(Topic.REPLIES), count=1)
        (asked_for,) = await kafka.read(own_topic, count=1)
    finally:
        await delete_topics(topics, [own_topic])

    headers = dict(fallen_back.headers)
    assert headers["correlation_id"] == opened["command_id"].encode()
    assert headers["reply_to.error"] == f"unknown_topic ({missing_topic})".encode()
    assert json.loads(fallen_back.value or b"")["status"] == "accepted"
    assert dict(asked_for.headers) == {"correlation_id": spend["command_id"].encode()}
    assert fallbacks._value.get() == before + 1
    # The producer was never asked to send there (it would wait a metadata timeout).
    assert missing_topic not in ledger.consumer._producer.client._topics
