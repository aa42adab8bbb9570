"""The one way this service makes a Kafka producer.

Every record it sends is a promise (a reply, a DLQ entry, an event, a command): acks from all
in-sync replicas, and idempotence so a retried send neither duplicates nor reorders within a
partition. Keys are partitioned with murmur2, as Java clients do (DESIGN §8), stated here rather
than left to a library default.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from infra.settings import Settings

# aiokafka's DefaultPartitioner: murmur2 of the key, modulo the partition count, like Java's.
MURMUR2_PARTITIONER = DefaultPartitioner()


def acknowledged_producer(
    settings: Settings, client_id: str, *, linger_ms: int = 1
) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        partitioner=MURMUR2_PARTITIONER,
        request_timeout_ms=int(settings.kafka_request_timeout_seconds * 1000),
    )
