"""`/healthz` reports PostgreSQL and Kafka apart: 200 when both answer, 503 naming the other."""

from __future__ import annotations

import httpx
import pytest

from infra.settings import Settings
from services.api.app import create_app
from tests.kit.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pg_database")]


async def _get_healthz(settings: Settings) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/healthz")


async def test_healthz_is_200_when_postgres_and_kafka_answer(settings: Settings) -> None:
    response = await _get_healthz(settings)

    assert response.status_code == 200
    body = response.json()
    assert body["failing"] == []
    assert body["parts"]["postgres"]["ok"] is True
    assert body["parts"]["kafka"]["ok"] is True


async def test_healthz_is_503_naming_kafka_when_no_broker_answers(settings: Settings) -> None:
    no_kafka = settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "kafka_request_timeout_seconds": 1,
        }
    )

    response = await _get_healthz(no_kafka)

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["kafka"]
    assert body["parts"]["postgres"]["ok"] is True


async def test_healthz_is_503_naming_postgres_when_it_does_not_answer(settings: Settings) -> None:
    no_postgres = settings.model_copy(
        update={"pg_port": free_port(), "pg_connect_timeout_seconds": 1}
    )

    response = await _get_healthz(no_postgres)

    assert response.status_code == 503
    assert response.json()["failing"] == ["postgres"]
