"""The one way this service makes Kafka clients: producers, consumers and admin clients.

The factories, their connection options (bootstrap servers, timeouts and, where the deployment
sets them, SASL (PLAIN, SCRAM-SHA-256/512) and TLS) and the murmur2 partitioner are the
producer client's (`credits_client.kafka_clients`, `credits_client.connection`): one way for
the ledger and for a producer service that installs the client alone. Handed on here, with
what only the service needs: stopping a producer within a bound while the brokers are away."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from itertools import chain

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from credits_client.connection import connection_options, tls_context
from credits_client.kafka_clients import acknowledged_producer, admin_client, consumer, kafka_admin
from credits_client.partitioning import MURMUR2_PARTITIONER

__all__ = [
    "MURMUR2_PARTITIONER",
    "acknowledged_producer",
    "admin_client",
    "connection_options",
    "consumer",
    "kafka_admin",
    "stop_producer",
    "tls_context",
]

log = structlog.get_logger("credits.kafka")


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
