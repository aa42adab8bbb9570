"""The one way this service makes Kafka clients: producers, consumers and admin clients.

Every client gets its connection options (bootstrap servers, timeouts and, where the
deployment sets them, SASL and TLS) from `connection_options`, so no component can forget
one. Every record a producer sends is a promise (a reply, a DLQ entry, an event, a command):
acks from all in-sync replicas, and idempotence so a retried send neither duplicates nor
reorders within a partition. Keys are partitioned with murmur2, as Java clients do, stated
here rather than left to a library default.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from infra.settings import Settings

# aiokafka's DefaultPartitioner: murmur2 of the key, modulo the partition count, like Java's.
MURMUR2_PARTITIONER = DefaultPartitioner()


def connection_options(settings: Settings) -> dict[str, Any]:
    """What every client needs to reach the brokers (aiokafka keyword arguments)."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "request_timeout_ms": int(settings.kafka_request_timeout_seconds * 1000),
    }


def acknowledged_producer(
    settings: Settings, client_id: str, *, linger_ms: int = 1, **options: Any
) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        partitioner=MURMUR2_PARTITIONER,
        **options,
    )


def consumer(settings: Settings, *topics: str, client_id: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer that never commits by itself: offsets are committed after the work is done."""
    merged: dict[str, Any] = {**connection_options(settings), "enable_auto_commit": False}
    merged.update(options)
    return AIOKafkaConsumer(*topics, client_id=client_id, **merged)


def admin_client(settings: Settings, client_id: str = "credits-admin") -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(settings), client_id=client_id)
