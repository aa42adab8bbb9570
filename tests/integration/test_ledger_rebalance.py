"""Two ledger processes in one consumer group, members leaving and joining, writers on Kafka.

Every account is written by two Kafka writers at once, each granting one credit and, once the
grant is answered, spending one. Whichever ledger owns the account's partition at that moment
(partitions move at every rebalance), a spend that follows an answered grant must be accepted:
a refusal would have been decided on a stale account. At the end each account's balance, as
the ledger last answered it, equals the fold of its stored events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from domain.account import Account
from domain.catalog import parse_catalog
from infra.event_store.env import event_store_env
from infra.kafka_clients import MURMUR2_PARTITIONER, acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from tests.ledger_harness import RunningLedger
from tests.ledger_process import LedgerProcess

pytestmark = pytest.mark.integration

# One credit type and no allocation: an account holds exactly what it was granted.
CATALOG = """
version = "payg-1"
[credit_types.credits]
unit = "credit"
[actions.call]
credit_type = "credits"
cost = 1
[plans.payg]
name = "Pay as you go"
"""
ACCOUNTS = 12
# One writer per account: a spend right after a grant is then often alone in its batch, where
# nothing else (a grant's version conflict) would make the ledger read the account again.
WRITERS_PER_ACCOUNT = 1
REBALANCES = 3
REPLY_TIMEOUT_SECONDS = 60.0
STOP_SECONDS = 10.0


class Replies:
    """Every reply on the default replies topic, by correlation id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._placed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._placed.wait(), 30)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        topic = self.settings.topic(Topic.REPLIES)
        consumer = kafka_consumer(self.settings, client_id="credits-tests", group_id=None)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)
            self._placed.set()
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        correlation = (dict(record.headers).get("correlation_id") or b"").decode()
                        future = self.waiting.get(correlation)
                        if future is not None and not future.done():
                            future.set_result(json.loads(record.value or b"{}"))
        finally:
            await consumer.stop()


@pytest.fixture
async def group(topics: Settings, tmp_path: Path) -> AsyncIterator[dict[str, LedgerProcess]]:
    catalog = tmp_path / "payg.toml"
    catalog.write_text(CATALOG)
    # Dynamic members here (no instance id): each stop and start rebalances at once.
    members = {
        name: LedgerProcess(topics, tmp_path / f"{name}.log", instance_id="", catalog_path=catalog)
        for name in ("one", "two")
    }
    for member in members.values():
        member.start()
    yield members
    for member in members.values():
        if member.alive():
            member.terminate(STOP_SECONDS)


async def test_no_refusal_is_decided_on_stale_state_while_partitions_move(
    topics: Settings, group: dict[str, LedgerProcess]
) -> None:
    run = uuid.uuid4().hex[:6]
    accounts = [f"rb-{run}-{n}" for n in range(ACCOUNTS)]
    partitions = list(range(topics.topic_partitions))
    # One probe account per partition, for the exact sequence that a stale cache would fail.
    probes: dict[int, str] = {}
    for n in range(1000):
        probe = f"probe-{run}-{n}"
        probes.setdefault(MURMUR2_PARTITIONER(probe.encode(), partitions, partitions), probe)
    replies = Replies(topics)
    await replies.start()
    producer = acknowledged_producer(topics, "credits-tests")
    await producer.start()
    statuses: Counter[str] = Counter()
    stale: list[dict[str, Any]] = []
    last_reply: dict[str, dict[str, Any]] = {}
    moving = asyncio.Event()
    writing = asyncio.Event()
    idle: set[str] = set()

    async def call(account: str, type: str, **fields: Any) -> dict[str, Any]:
        command_id = uuid.uuid4().hex
        body = {"type": type, "command_id": command_id, "account_id": account, **fields}
        answered = asyncio.get_running_loop().create_future()
        replies.waiting[command_id] = answered
        await producer.send_and_wait(
            topics.topic(Topic.COMMANDS),
            value=json.dumps(body).encode(),
            key=account.encode(),
            headers=[("correlation_id", command_id.encode())],
        )
        reply = await asyncio.wait_for(answered, REPLY_TIMEOUT_SECONDS)
        statuses[f"{type} {reply['status']}"] += 1
        last_reply[account] = reply
        return reply

    async def grant_then_spend(account: str) -> None:
        granted = await call(account, "grant", credit_type="credits", amount=1, source="admin")
        assert granted["status"] == "accepted", granted
        await spend(account)

    async def spend(account: str) -> None:
        spent = await call(account, "consume", action="call")
        if spent["status"] != "accepted":
            stale.append(spent)

    async def writer(account: str) -> None:
        while not moving.is_set():
            if not writing.is_set():
                idle.add(account)
                await writing.wait()
                idle.discard(account)
            await grant_then_spend(account)

    async def writers_paused() -> None:
        writing.clear()
        async with asyncio.timeout(REPLY_TIMEOUT_SECONDS):
            while len(idle) < len(accounts):
                await asyncio.sleep(0.05)

    try:
        for account in [*accounts, *probes.values()]:
            assert (await call(account, "open_account", plan="payg"))["status"] == "accepted"
        writing.set()
        writers = [asyncio.create_task(writer(a)) for a in accounts]
        one, two = group["one"], group["two"]
        for _ in range(REBALANCES):
            # "one" keeps running: it owns every partition, loses some to "two", and takes
            # them back when "two" leaves. What it cached of their accounts is stale by then.
            seen = _assignments(one)
            two.terminate(STOP_SECONDS)
            await _assigned(one, seen + 1)
            for probe in probes.values():
                await grant_then_spend(probe)  # applied by "one": cached with nothing left
            seen = _assignments(one)
            two.start()
            await _assigned(one, seen + 1)
            lost = set(partitions) - set(_last_assignment(one))
            for partition in sorted(lost):
                granted = await call(
                    probes[partition], "grant", credit_type="credits", amount=1, source="admin"
                )
                assert granted["status"] == "accepted"  # applied by "two"
            seen = _assignments(one)
            await writers_paused()  # nothing else in the next batches to refresh the cache
            two.terminate(STOP_SECONDS)
            await _assigned(one, seen + 1)
            for partition in sorted(lost):
                await spend(probes[partition])  # decided by "one": the grant must count
            writing.set()
            seen = _assignments(one)
            two.start()
            await _assigned(one, seen + 1)
        rebalances = _assignments(one)
        moving.set()
        writing.set()
        await asyncio.gather(*writers)
    finally:
        await producer.stop()
        await replies.stop()

    counts = dict(sorted(statuses.items()))
    print(f"\n{rebalances} assignments of the member that stayed; replies: {counts}")
    assert stale == [], "a spend right after an answered grant was refused"
    assert statuses["consume accepted"] >= ACCOUNTS * WRITERS_PER_ACCOUNT
    reader = LedgerApplication(env={**event_store_env(topics), "AGGREGATE_CACHE_MAXSIZE": "0"})
    try:
        for account in [*accounts, *probes.values()]:
            events = list(reader.events.get(account))
            granted_total = sum(e.amount for e in events if isinstance(e, Account.Granted))
            spent_total = sum(e.amount for e in events if isinstance(e, Account.Consumed))
            folded: Account = reader.repository.get(account)
            answered = last_reply[account]["balances"]["credits"]["available"]
            assert folded.balances(parse_catalog(CATALOG))["credits"]["available"] == answered
            assert granted_total - spent_total == answered == 0
    finally:
        reader.close()


def _last_assignment(member: LedgerProcess) -> list[int]:
    events = [e for e in member.log_events() if e.get("event") == "partitions assigned"]
    return list(events[-1]["partitions"])


def _assignments(member: LedgerProcess) -> int:
    return sum(1 for e in member.log_events() if e.get("event") == "partitions assigned")


async def _assigned(member: LedgerProcess, count: int) -> None:
    async with asyncio.timeout(REPLY_TIMEOUT_SECONDS):
        while _assignments(member) < count:
            await asyncio.sleep(0.1)


async def test_a_ledger_forgets_the_cached_accounts_of_partitions_it_loses(
    topics: Settings,
) -> None:
    ledger = RunningLedger(topics, as_in_production=True)
    await ledger.start()
    try:
        producer = acknowledged_producer(topics, "credits-tests")
        await producer.start()
        accounts = [f"forget-{uuid.uuid4().hex[:6]}-{n}" for n in range(40)]
        try:
            for account in accounts:
                body = {"type": "open_account", "command_id": account, "account_id": account}
                body["plan"] = "pro"
                await producer.send_and_wait(
                    topics.topic(Topic.COMMANDS), json.dumps(body).encode(), account.encode()
                )
        finally:
            await producer.stop()
        app = ledger.app
        async with asyncio.timeout(30):
            while not set(accounts) <= set(app.cached_account_ids()):
                await asyncio.sleep(0.05)
        kafka = ledger.consumer._consumer
        lost = {tp for tp in kafka.assignment() if tp.partition in (0, 2)}
        partitions = sorted(kafka.partitions_for_topic(topics.topic(Topic.COMMANDS)))

        await ledger.consumer._on_revoked(lost)

        kept = set(app.cached_account_ids())
        for account in accounts:
            partition = MURMUR2_PARTITIONER(account.encode(), partitions, partitions)
            assert (account in kept) == (partition not in (0, 2)), (account, partition)
    finally:
        await ledger.close()
