"""Fixtures of the API tests: the API app in process on this module's own topics, with a real
ledger consumer behind it (commands go through Kafka), the projector, and one key per scope."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from domain.catalog import load_catalog
from infra.kafka_topics import delete_topics
from infra.settings import Settings
from projections.read_side import ReadSide
from services.api import keys
from services.api.app import close_app, create_app
from services.api.gateway import CommandGateway
from tests.ledger_harness import RunningLedger, own_topics
from tests.projections.conftest import demo_catalog, pg_ledger, read_side

__all__ = ["demo_catalog", "pg_ledger", "read_side"]

PORTAL_SECRET = "portal-test-secret"


async def create_key(settings: Settings, scope: keys.Scope, name: str = "test") -> str:
    conn = await asyncpg.connect(settings.pg_dsn())
    try:
        await keys.ensure_table(conn)
        return (await keys.create_key(conn, name, scope)).secret_key
    finally:
        await conn.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def start_api(settings: Settings) -> FastAPI:
    """The app as `credits run api` builds it, with a reply topic of its own deleted after."""
    return create_app(settings, gateway=CommandGateway(settings, delete_reply_topic_on_stop=True))


def api_settings_for(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(
        update={
            "api_instance_id": f"test-{uuid.uuid4().hex[:8]}",
            "portal_token_secrets": PORTAL_SECRET,
            **update,
        }
    )


@pytest.fixture(scope="module")
async def api_settings(settings: Settings, pg_database: str) -> AsyncIterator[Settings]:
    own = api_settings_for(await own_topics(settings))
    yield own
    await delete_topics(own, own.all_topics())


@pytest.fixture(scope="module")
async def ledger(api_settings: Settings) -> AsyncIterator[RunningLedger]:
    running = RunningLedger(api_settings, catalog=load_catalog(api_settings.catalog_path))
    await running.start()
    yield running
    await running.close()


@pytest.fixture(scope="module")
async def projector_running(read_side: ReadSide) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(read_side.projector().run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=10)


@pytest.fixture(scope="module")
async def api(
    api_settings: Settings, ledger: RunningLedger, projector_running: None
) -> AsyncIterator[FastAPI]:
    app = await start_api(api_settings)
    yield app
    await close_app(app)


@pytest.fixture(scope="module")
async def scope_keys(api_settings: Settings) -> dict[keys.Scope, str]:
    return {scope: await create_key(api_settings, scope) for scope in keys.Scope}


@pytest.fixture
async def client(
    api: FastAPI, scope_keys: dict[keys.Scope, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the module's app with an admin key (which may call every route but ops)."""
    transport = httpx.ASGITransport(app=api)
    headers = bearer(scope_keys[keys.Scope.admin])
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as http:
        yield http
