"""Fixtures for the client's tests: topics of a module's own, a real ledger, clients.

`RunningLedger` mirrors tests/integration/test_ledger_kafka.py (that file is not ours to edit
or import fixtures from): a `LedgerConsumer` on the real Kafka and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from credits_client import CreditsClient
from credits_client.transport import ReplyRecord

from infra.kafka_topics import delete_topics
from infra.settings import Settings
from tests.kit.clock import SettableClock
from tests.kit.ledger import Ledger
from tests.ledger_harness import RunningLedger, own_topics

# Every client call in these tests ends within this; the ledger answers in milliseconds.
CALL_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="module")
async def topics(settings: Settings, pg_database: str) -> AsyncIterator[Settings]:
    own = await own_topics(settings)
    yield own
    await delete_topics(own, own.all_topics())


@pytest.fixture(scope="module")
async def ledger(topics: Settings) -> AsyncIterator[RunningLedger]:
    """One ledger per module: starting a consumer group costs seconds, a test milliseconds."""
    running = RunningLedger(topics)
    await running.start()
    yield running
    await running.close()


ClientFactory = Callable[..., Awaitable[CreditsClient]]


@pytest.fixture
async def make_client(topics: Settings) -> AsyncIterator[ClientFactory]:
    """Started clients on this module's topics; each deletes its own reply topic at the end."""
    started: list[CreditsClient] = []

    async def make(settings: Settings | None = None, **options: Any) -> CreditsClient:
        options.setdefault("client_id", f"test-{uuid.uuid4().hex[:8]}")
        options.setdefault("timeout_seconds", CALL_TIMEOUT_SECONDS)
        options.setdefault("delete_reply_topic_on_stop", options.get("reply_topic") is None)
        client = CreditsClient(settings or topics, **options)
        await client.start()
        started.append(client)
        return client

    yield make
    for client in started:
        await client.stop()


def account(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class InMemoryLedgerWire:
    """Stands in for Kafka and the ledger consumer in unit tests: what the client would put
    on the wire is recorded, and answered by the in-memory ledger (tests/kit/ledger.py)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.sent: list[tuple[bytes, bytes]] = []
        self.replies: list[bytes] = []

    async def request(
        self,
        *,
        key: bytes,
        value: bytes,
        timeout_seconds: float,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[str, ReplyRecord | None]:
        self.sent.append((key, value))
        reply = self.ledger.service.handle(value).model_dump_json().encode()
        self.replies.append(reply)
        correlation_id = uuid.uuid4().hex
        return correlation_id, ReplyRecord(correlation_id=correlation_id, value=reply)


@pytest.fixture
async def offline() -> AsyncIterator[tuple[CreditsClient, InMemoryLedgerWire]]:
    """A client (never started) whose calls go to an in-memory ledger instead of Kafka."""
    client = CreditsClient(Settings(), client_id="offline", timeout_seconds=1)
    wire = InMemoryLedgerWire(Ledger("demo.toml", SettableClock(datetime.now(UTC))))
    client._transport.request = wire.request  # type: ignore[method-assign]
    yield client, wire
    wire.ledger.close()
