"""The api component serves the API, health and the Stripe webhook on its port, and nothing of
the ops port there (its process's ops port: tests/integration/test_component_processes.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from infra.settings import Settings
from services.api.keys import Scope
from services.cli.supervisor import run_api
from tests.api.conftest import bearer, create_key
from tests.kit.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pg_database", "kafka_topics")]


async def test_the_api_component_serves_reads_health_and_the_stripe_webhook(
    settings: Settings,
) -> None:
    mine = settings.model_copy(
        update={
            "http_port": free_port(),
            "ops_port": free_port(),
            "stripe_webhook_secrets": "whsec_test",
        }
    )
    key = await create_key(mine, Scope.read)
    stop = asyncio.Event()
    task = asyncio.create_task(run_api(mine, stop))
    base_url = f"http://127.0.0.1:{mine.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            async with asyncio.timeout(30):
                while True:
                    try:
                        health = await client.get("/healthz")
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.1)
            unsigned = await client.post("/webhooks/stripe", content=b'{"id": "evt_1"}')
            anonymous = await client.get("/v1/accounts/nobody-here")
            unknown = await client.get("/v1/accounts/nobody-here", headers=bearer(key))
            public_metrics = await client.get("/metrics")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    assert health.status_code == 200
    assert unsigned.status_code == 400
    assert unsigned.json()["error"]["code"] == "signature_missing"
    assert anonymous.status_code == 401
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_account"
    assert public_metrics.status_code == 404
