"""The local stack that `make test` starts is real: Kafka and PostgreSQL answer, topics exist."""

from __future__ import annotations

import json

import psycopg
import pytest

from infra.kafka_topics import create_topics, partition_counts
from infra.settings import Settings, Topic
from tests.kafka_client import KafkaTestClient

pytestmark = pytest.mark.integration


async def test_kafka_round_trips_keyed_messages_in_order_per_key(
    kafka: KafkaTestClient, settings: Settings
) -> None:
    topic = settings.topic(Topic.COMMANDS)
    accounts = [f"acct-{n}" for n in range(5)]
    sent = []
    for sequence in range(4):
        for account in accounts:
            value = json.dumps({"account_id": account, "sequence": sequence}).encode()
            partition, offset = await kafka.produce(
                topic,
                account,
                value,
                headers=[("correlation_id", f"{account}/{sequence}".encode())],
            )
            sent.append((account, sequence, partition, offset))

    received = await kafka.read(topic, count=len(sent))

    assert len(received) == len(sent)
    by_account: dict[str, list[int]] = {}
    partition_of: dict[str, set[int]] = {}
    for message in received:
        body = json.loads(message.value or b"")
        account = (message.key or b"").decode()
        assert body["account_id"] == account
        assert dict(message.headers)["correlation_id"] == f"{account}/{body['sequence']}".encode()
        by_account.setdefault(account, []).append(body["sequence"])
        partition_of.setdefault(account, set()).add(message.partition)
    # The key decides the partition, so each account's messages share one and keep their order.
    assert all(len(partitions) == 1 for partitions in partition_of.values())
    for account in accounts:
        ordered = sorted((m for m in received if m.key == account.encode()), key=lambda m: m.offset)
        assert [json.loads(m.value or b"")["sequence"] for m in ordered] == [0, 1, 2, 3]


async def test_public_topics_exist_with_the_fixed_partition_count(
    kafka_topics: list[str], settings: Settings
) -> None:
    counts = await partition_counts(settings, kafka_topics)

    assert sorted(counts) == sorted(settings.all_topics())
    assert set(counts.values()) == {settings.topic_partitions}
    # Creating again is harmless: every topic already exists.
    assert set((await create_topics(settings)).values()) == {"exists"}


def test_postgres_writes_and_reads_back_in_the_session_database(pg_database: str) -> None:
    with psycopg.connect(pg_database) as conn:
        conn.execute("CREATE TABLE stack_probe (id bigint PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO stack_probe VALUES (1, 'written'), (2, 'read')")
        conn.commit()
    with psycopg.connect(pg_database) as conn:
        rows = conn.execute("SELECT id, note FROM stack_probe ORDER BY id").fetchall()
        database = conn.execute("SELECT current_database()").fetchone()

    assert rows == [(1, "written"), (2, "read")]
    assert database is not None and database[0].startswith("credits_test_")
