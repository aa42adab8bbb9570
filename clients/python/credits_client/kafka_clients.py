"""The one way Kafka clients are made, here and in the service (`infra/kafka_clients.py` hands
these on): producers, consumers and admin clients.

Every client gets its connection options from `connection_options`, so none can forget one.
Every record a producer sends is a promise (a command, a reply, a DLQ entry, an event): acks
from all in-sync replicas, and idempotence so a retried send neither duplicates nor reorders
within a partition. Keys are partitioned with murmur2, as Java clients do (`partitioning`)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from credits_client.connection import KafkaSettings, connection_options
from credits_client.partitioning import MURMUR2_PARTITIONER

# Refusals no retry can fix: the credentials, the SASL mechanism, the certificates.
_REFUSALS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLError,
)


async def refusal(settings: KafkaSettings) -> str | None:
    """Why the brokers refuse this client, if they do: aiokafka only logs it, and its `start()`
    then raises a bare "Unable to bootstrap". Names the user, never the password."""
    options = connection_options(settings)
    del options["bootstrap_servers"]
    who = "TLS"
    if settings.kafka_security_protocol.startswith("SASL_"):
        who = f"user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism})"
    for host, port in settings.kafka_bootstrap_servers():
        try:
            conn = await create_conn(host, port, client_id="credits-refusal-probe", **options)
        except _REFUSALS as error:
            return f"{host}:{port} refused {who}: {type(error).__name__}: {error}"
        except (OSError, KafkaError, TimeoutError):
            continue
        conn.close()
    return None


class _SaysWhyRefused:
    """A client whose `start()`, when no broker can be reached, says why where the brokers
    refused it (`refusal`) rather than only "Unable to bootstrap"."""

    def __init__(self, settings: KafkaSettings, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings

    async def start(self) -> None:
        try:
            await super().start()  # type: ignore[misc]
        except KafkaConnectionError as error:
            reason = await refusal(self._settings)
            if reason is None:
                raise
            raise KafkaConnectionError(f"{error}: {reason}") from error


class Producer(_SaysWhyRefused, AIOKafkaProducer):
    pass


class Consumer(_SaysWhyRefused, AIOKafkaConsumer):
    pass


class AdminClient(_SaysWhyRefused, AIOKafkaAdminClient):
    pass


def acknowledged_producer(
    settings: KafkaSettings, client_id: str, *, linger_ms: int = 1, **options: Any
) -> AIOKafkaProducer:
    return Producer(
        settings,
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        partitioner=MURMUR2_PARTITIONER,
        **options,
    )


def consumer(
    settings: KafkaSettings, *topics: str, client_id: str, **options: Any
) -> AIOKafkaConsumer:
    """A consumer that never commits by itself: offsets are committed after the work is done."""
    merged: dict[str, Any] = {**connection_options(settings), "enable_auto_commit": False}
    merged.update(options)
    return Consumer(settings, *topics, client_id=client_id, **merged)


def admin_client(settings: KafkaSettings, client_id: str = "credits-admin") -> AIOKafkaAdminClient:
    return AdminClient(settings, **connection_options(settings), client_id=client_id)


@asynccontextmanager
async def kafka_admin(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = admin_client(settings)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()
