"""Fixtures for the real local stack (`make test` starts it): PostgreSQL and Kafka.

Each test session gets a database and topics of its own, named with a run id, and removes them
at the end, so runs never see each other's data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from infra.kafka_topics import delete_topics
from infra.readiness import READINESS
from infra.settings import Settings
from tests.databases import fresh_database
from tests.kafka_client import KafkaTestClient, created_topics
from tests.ledger_harness import own_topics

RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """The settings `make test` runs with (CREDITS_* from the environment, local defaults)."""
    return Settings()


@pytest.fixture(scope="session")
def settings(base_settings: Settings) -> Settings:
    """Settings pointed at this run's own database and topics."""
    return base_settings.model_copy(
        update={"pg_database": f"credits_test_{RUN_ID}", "topic_prefix": f"test-{RUN_ID}."}
    )


@pytest.fixture(scope="session")
def pg_database(base_settings: Settings, settings: Settings) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; yields its DSN."""
    with fresh_database(base_settings, settings.pg_database):
        yield settings.pg_dsn()


@pytest.fixture(scope="session")
async def kafka_topics(settings: Settings) -> AsyncIterator[list[str]]:
    """This run's copies of the public topics (prefixed with the run id)."""
    async with created_topics(settings) as names:
        yield names


@pytest.fixture
async def kafka(settings: Settings, kafka_topics: list[str]) -> AsyncIterator[KafkaTestClient]:
    client = KafkaTestClient(settings)
    await client.start()
    yield client
    await client.stop()


@pytest.fixture
async def topics(settings: Settings, pg_database: str) -> AsyncIterator[Settings]:
    """Topics of one test's own, so no other test's records are consumed."""
    own = await own_topics(settings)
    yield own
    await delete_topics(own, own.all_topics())


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """For tests that run `services.cli.main`: it points the root logger at the stderr it sees
    (pytest's capture, closed after the test), which later tests' log lines would then hit."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(autouse=True)
def readiness_restored() -> Iterator[None]:
    """Components a test ran in this process leave their readiness registered ("stopped"), as
    they should in a service; the next test's `/readyz` must not answer for them."""
    before = set(READINESS.snapshot())
    yield
    for component in set(READINESS.snapshot()) - before:
        READINESS.unregister(component)
