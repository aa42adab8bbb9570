"""The one way this service makes Kafka clients: producers, consumers and admin clients.

Every client gets its connection options (bootstrap servers, timeouts and, where the
deployment sets them, SASL and TLS) from `connection_options`, so no component can forget
one. Every record a producer sends is a promise (a reply, a DLQ entry, an event, a command):
acks from all in-sync replicas, and idempotence so a retried send neither duplicates nor
reorders within a partition. Keys are partitioned with murmur2, as Java clients do, stated
here rather than left to a library default.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from itertools import chain
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner

from infra.settings import Settings

log = structlog.get_logger("credits.kafka")

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


async def stop_producer(producer: AIOKafkaProducer, *, within_seconds: float) -> None:
    """Stops a producer in a bounded time, delivering what it holds meanwhile.

    aiokafka's `stop()` first delivers every pending record, and an idempotent producer retries
    a record until a broker takes it: with the brokers away, `stop()` waits as long as the
    outage lasts. Past `within_seconds` the records still pending are dropped, which their
    senders allow for (a relay batch and a scheduler firing are only marked done once
    acknowledged: they are sent again), and the connections are closed.
    """
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=within_seconds)
    if not done:
        log.warning("dropping records the brokers did not take", within_seconds=within_seconds)
        _drop_pending(producer)
        done, _ = await asyncio.wait({stopping}, timeout=within_seconds)
    if not done:
        stopping.cancel()
        # Without this its metadata task would keep trying to reach the brokers for ever.
        with suppress(Exception):
            await asyncio.wait_for(producer.client.close(), timeout=within_seconds)
        return
    with suppress(asyncio.CancelledError, Exception):
        # A broker gone while flushing fails the flush: the records are dropped, as above.
        stopping.result()


def _drop_pending(producer: AIOKafkaProducer) -> None:
    """Ends the producer's sender and fails the records it still holds, after which `stop()`
    goes on to close the connections. aiokafka has no public way to do this."""
    sender = producer._sender.sender_task
    if sender is not None:
        sender.cancel()
    accumulator = producer._message_accumulator
    batches = [*chain.from_iterable(accumulator._batches.values()), *accumulator._pending_batches]
    accumulator.fail_all(
        KafkaConnectionError("the producer stopped before the brokers took this record")
    )
    for waiter in chain.from_iterable((b.future, b._drain_waiter) for b in batches):
        # Failed too, and maybe awaited by nobody: retrieved, or asyncio reports each one.
        if waiter.done() and not waiter.cancelled():
            waiter.exception()
