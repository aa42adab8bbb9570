"""The one way this service makes Kafka clients: producers, consumers and admin clients.

Every client gets its connection options (bootstrap servers, timeouts and, where the deployment
sets them, SASL (PLAIN, SCRAM-SHA-256/512) and TLS) from `connection_options`, so no component
can forget one. Every record a producer sends is a promise (a reply, a DLQ entry, an event, a
command): acks from all in-sync replicas, and idempotence so a retried send neither duplicates
nor reorders within a partition. Keys are partitioned with murmur2, as Java clients do, stated
here rather than left to a library default."""

from __future__ import annotations

import asyncio
import logging
import ssl
from contextlib import suppress
from itertools import chain
from typing import Any

import structlog
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
from aiokafka.partitioner import DefaultPartitioner

from infra.settings import Settings


class _HidesSaslSecrets(logging.Filter):
    """aiokafka's DEBUG lines show each request sent, SASL ones included: PLAIN's carry the
    password in clear (`sasl_auth_bytes=b'user\\x00user\\x00password'`). Those lines are
    dropped; the others stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        return not any("sasl_auth_bytes" in repr(arg) for arg in args)


# Every module that makes a Kafka client imports this one first.
logging.getLogger("aiokafka.conn").addFilter(_HidesSaslSecrets())

log = structlog.get_logger("credits.kafka")

# aiokafka's DefaultPartitioner: murmur2 of the key, modulo the partition count, like Java's.
MURMUR2_PARTITIONER = DefaultPartitioner()


def connection_options(settings: Settings) -> dict[str, Any]:
    """What every client needs to reach the brokers (aiokafka keyword arguments): the
    addresses, timeouts, and the security settings (SASL, TLS). Holds the SASL password in
    clear: pass it to a client, never log it."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "request_timeout_ms": int(settings.kafka_request_timeout_seconds * 1000),
        "security_protocol": protocol,
    }
    tls = tls_context(settings)
    if tls is not None:
        options["ssl_context"] = tls
    if protocol.startswith("SASL_"):
        # aiokafka takes the SCRAM credentials in the same two arguments as PLAIN's.
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL connections (None for the others): the brokers'
    certificates checked against the CA file (or the system's CAs), hostnames checked unless
    turned off, this client's certificate where one is configured."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_file or None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_cert_file:
        context.load_cert_chain(
            settings.kafka_ssl_cert_file,
            settings.kafka_ssl_key_file or None,
            password=settings.kafka_ssl_key_password.get_secret_value() or None,
        )
    return context


# Refusals no retry can fix: the credentials, the SASL mechanism, the certificates.
_REFUSALS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLError,
)


async def refusal(settings: Settings) -> str | None:
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

    def __init__(self, settings: Settings, *args: Any, **kwargs: Any) -> None:
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
    settings: Settings, client_id: str, *, linger_ms: int = 1, **options: Any
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


def consumer(settings: Settings, *topics: str, client_id: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer that never commits by itself: offsets are committed after the work is done."""
    merged: dict[str, Any] = {**connection_options(settings), "enable_auto_commit": False}
    merged.update(options)
    return Consumer(settings, *topics, client_id=client_id, **merged)


def admin_client(settings: Settings, client_id: str = "credits-admin") -> AIOKafkaAdminClient:
    return AdminClient(settings, **connection_options(settings), client_id=client_id)


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
