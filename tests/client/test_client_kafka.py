"""The client against the real Kafka and the real ledger consumer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from credits_client import ClientClosed, CommandTimeout, partition_for
from credits_client.partitioning import MURMUR2_PARTITIONER

from infra.kafka_clients import consumer as kafka_consumer
from infra.kafka_topics import delete_topics
from infra.settings import Settings, Topic
from tests.client.conftest import ClientFactory, RunningLedger, account, own_topics
from tests.kafka_client import Received

pytestmark = pytest.mark.integration


async def read_keys(settings: Settings, topic: str, keys: set[bytes]) -> list[Received]:
    """The records of `topic` with these keys, read from the start (no consumer group)."""
    consumer = kafka_consumer(
        settings, client_id="credits-tests", group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        received: list[Received] = []
        async with asyncio.timeout(10):
            while {r.key for r in received} != keys:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received += [Received.of(r) for r in records if r.key in keys]
        return received
    finally:
        await consumer.stop()


async def test_open_consume_reserve_capture_release_grant(
    ledger: RunningLedger, make_client: ClientFactory
) -> None:
    client = await make_client()
    acct = account("flow")

    opened = await client.open_account(acct, "pro")
    assert opened.status == "accepted", opened
    start = opened.balances["credits"].available

    spent = await client.consume(acct, "generate", quantity=2, metadata={"request": "r-1"})
    assert spent.status == "accepted", spent
    assert spent.balances["credits"].available == start - 4  # generate costs 2 on pro

    held = await client.reserve(acct, "hold-1", "lookup", quantity=5, ttl_seconds=600)
    assert held.status == "accepted", held
    assert held.balances["credits"].held == 5
    captured = await client.capture(acct, "hold-1", amount=3)
    assert captured.status == "accepted", captured
    assert (captured.balances["credits"].held, captured.balances["credits"].available) == (
        0,
        start - 4 - 3,
    )

    await client.reserve(acct, "hold-2", credit_type="credits", amount=7, ttl_seconds=600)
    released = await client.release(acct, "hold-2")
    assert released.status == "accepted", released
    assert released.balances["credits"].available == start - 7

    granted = await client.grant(acct, "credits", 100, source="promotional", reference="promo-1")
    assert granted.status == "accepted", granted
    assert granted.balances["credits"].available == start - 7 + 100
    # The last reply's balances, kept without asking anyone.
    assert client.balance(acct) == granted.balances


async def test_rejections_come_back_as_replies_with_their_codes(
    ledger: RunningLedger, make_client: ClientFactory
) -> None:
    client = await make_client()
    acct = account("poor")
    await client.open_account(acct, "free")

    too_much = await client.consume(acct, credit_type="credits", amount=10**9)
    unknown = await client.consume(account("nobody"), "lookup")
    no_hold = await client.capture(acct, "never-reserved")

    assert too_much.status == "rejected"
    assert too_much.error is not None and too_much.error.code == "insufficient_credits"
    assert too_much.balances["credits"].available > 0, "a rejection shows the balances as of now"
    assert unknown.error is not None and unknown.error.code == "unknown_account"
    assert no_hold.error is not None and no_hold.error.code == "hold_not_found"


async def test_a_resource_limit_is_set_and_cleared_and_spendable_is_quoted_through_kafka(
    ledger: RunningLedger, make_client: ClientFactory
) -> None:
    client = await make_client()
    acct = account("limits")
    await client.open_account(acct, "free")  # resource cap 20 a day; may not spend paid credits

    limited = await client.set_resource_limit(acct, "qr-1", 1)
    assert limited.status == "accepted", limited
    assert limited.result["effective_limit"] == 1
    assert (await client.consume(acct, "lookup", resource="qr-1")).status == "accepted"
    refused = await client.consume(acct, "lookup", resource="qr-1")
    assert refused.error is not None and refused.error.code == "resource_limit_reached"
    assert refused.error.message.startswith("qr-1: 1 of 1 used today")

    above = await client.set_resource_limit(acct, "qr-1", 21)
    assert above.error is not None and above.error.code == "limit_above_plan"
    cleared = await client.set_resource_limit(acct, "qr-1", None)  # null travels: it clears
    assert cleared.result == {
        "resource": "qr-1",
        "daily_limit": None,
        "plan_limit": 20,
        "effective_limit": 20,
        "changed": True,
    }
    assert (await client.consume(acct, "lookup", resource="qr-1")).status == "accepted"

    paid = await client.purchase(
        acct, payment_reference=f"pi-{acct}", amount_paid=300, currency="usd", pack="messages_100"
    )
    messages = paid.balances["messages"]
    assert messages.spendable == messages.available, "messages: every plan may spend them"
    credits = paid.balances["credits"]
    assert credits.spendable == credits.available


async def test_a_retry_with_the_same_command_id_is_a_duplicate_with_the_original_result(
    ledger: RunningLedger, make_client: ClientFactory
) -> None:
    client = await make_client()
    acct = account("dup")
    await client.open_account(acct, "pro")
    command_id = f"request-{uuid.uuid4().hex}"

    first = await client.consume(acct, "lookup", command_id=command_id)
    later = await client.consume(acct, "lookup")
    retry = await client.consume(acct, "lookup", command_id=command_id)
    conflict = await client.consume(acct, "generate", command_id=command_id)

    assert (first.status, retry.status) == ("accepted", "duplicate")
    assert retry.result == first.result and retry.balances == first.balances
    assert conflict.error is not None and conflict.error.code == "idempotency_conflict"
    # A duplicate's balances are the original's, older than `later`'s: not remembered.
    assert client.balance(acct) == later.balances


async def test_each_call_gets_exactly_one_record_on_its_reply_topic(
    topics: Settings, ledger: RunningLedger, make_client: ClientFactory
) -> None:
    """Only the ledger's replies: no framework answer to `reply_to` beside them (FastStream's
    is an empty record with the sender's correlation id, which a client reads as the reply)."""
    client = await make_client()
    acct = account("once")
    replies = [await client.open_account(acct, "pro")]
    replies += [await client.consume(acct, "lookup") for _ in range(4)]
    assert [r.status for r in replies] == ["accepted"] * 5

    consumer = kafka_consumer(
        topics,
        client.reply_topic,
        client_id="credits-tests",
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        values: list[bytes | None] = []
        deadline = time.monotonic() + 2  # an extra record would come right after its reply
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values += [r.value for r in records]
    finally:
        await consumer.stop()
    assert len(values) == 5, values
    assert all(values)


async def test_concurrent_calls_each_get_their_own_reply(
    ledger: RunningLedger, make_client: ClientFactory
) -> None:
    client = await make_client(max_in_flight=64)
    accounts = [account("many") for _ in range(10)]
    await asyncio.gather(*(client.open_account(a, "pro") for a in accounts))

    calls = [(a, f"c-{n}-{a}") for n in range(20) for a in accounts]
    replies = await asyncio.gather(
        *(client.consume(a, "lookup", command_id=command_id) for a, command_id in calls)
    )

    assert [(r.account_id, r.command_id) for r in replies] == calls
    assert {r.status for r in replies} == {"accepted"}
    for a in accounts:
        mine = sorted(r.balances["credits"].available for r in replies if r.account_id == a)
        # Twenty distinct balances one credit apart: every call got its own command's reply.
        assert mine == list(range(mine[0], mine[0] + 20))
    assert client.in_flight == 0


async def test_commands_are_keyed_by_account_on_the_java_partition_with_reply_headers(
    ledger: RunningLedger, topics: Settings, make_client: ClientFactory
) -> None:
    client = await make_client()
    accounts = [account("key") for _ in range(12)]
    for a in accounts:
        await client.open_account(a, "free")

    keys = {a.encode() for a in accounts}
    records = await read_keys(topics, topics.topic(Topic.COMMANDS), keys)

    mine = {r.key: r for r in records}
    assert len(records) == len(accounts), "one command per account"
    for a in accounts:
        record = mine[a.encode()]
        # partition_for is the Java client's choice (test_murmur2_java.py).
        assert record.partition == partition_for(a, topics.topic_partitions)
        headers = dict(record.headers)
        assert headers["reply_to"] == client.reply_topic.encode()
        assert len(headers["correlation_id"]) == 32
    assert len({p.partition for p in mine.values()}) > 1, "twelve accounts spread out"
    assert client._transport._producer._partitioner is MURMUR2_PARTITIONER  # type: ignore[union-attr]


@pytest.fixture(scope="module")
async def unanswered(settings: Settings) -> AsyncIterator[Settings]:
    """Topics of their own that no ledger consumes: commands sent there are never answered."""
    own = await own_topics(settings)
    yield own
    await delete_topics(own, own.all_topics())


async def test_a_call_nobody_answers_fails_in_bounded_time(
    unanswered: Settings, make_client: ClientFactory
) -> None:
    client = await make_client(unanswered, timeout_seconds=0.5, max_in_flight=2)
    seen_in_flight: list[int] = []

    async def watch() -> None:
        while True:
            seen_in_flight.append(client.in_flight)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(client.consume(account("void"), "lookup") for _ in range(5)),
        return_exceptions=True,
    )
    elapsed_seconds = time.monotonic() - started
    watcher.cancel()

    assert all(isinstance(o, CommandTimeout) for o in outcomes), outcomes
    # Waiting for one of the two slots counts against each call's own bound.
    assert 0.5 <= elapsed_seconds < 1.5
    assert max(seen_in_flight) == 2
    assert client.in_flight == 0
    assert client.stats.timeouts == 5


async def test_stop_fails_waiting_calls_at_once(
    unanswered: Settings, make_client: ClientFactory
) -> None:
    client = await make_client(unanswered, timeout_seconds=30)
    call = asyncio.create_task(client.consume(account("stop"), "lookup"))
    async with asyncio.timeout(10):
        while client.in_flight == 0:
            await asyncio.sleep(0.01)
    started = time.monotonic()
    await client.stop()

    with pytest.raises(ClientClosed):
        await call
    assert time.monotonic() - started < 5
    with pytest.raises(ClientClosed):
        await client.consume(account("stop"), "lookup")


async def test_clients_sharing_the_default_reply_topic_get_only_their_own_replies(
    ledger: RunningLedger, topics: Settings, make_client: ClientFactory
) -> None:
    shared = topics.topic(Topic.REPLIES)
    one = await make_client(reply_topic=shared, create_reply_topic=False)
    two = await make_client(reply_topic=shared, create_reply_topic=False)
    a, b = account("share-a"), account("share-b")

    replies = await asyncio.gather(one.open_account(a, "pro"), two.open_account(b, "free"))

    assert [(r.account_id, r.status) for r in replies] == [(a, "accepted"), (b, "accepted")]
    # Each read the other's reply too (the fan-out cost) and skipped it by correlation id.
    async with asyncio.timeout(5):
        while one.stats.unmatched_replies < 1 or two.stats.unmatched_replies < 1:
            await asyncio.sleep(0.05)
