"""Whether the servers a component needs answer: PostgreSQL and Kafka, each probed apart
(the API's `/healthz`, every component's `/readyz` on the ops port)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from infra.kafka_clients import tls_context
from infra.kafka_probe import broker_answers
from infra.settings import Settings


@dataclass(frozen=True)
class PartHealth:
    ok: bool
    detail: str


async def postgres_health(settings: Settings) -> PartHealth:
    timeout_seconds = settings.pg_connect_timeout_seconds
    try:
        conn = await asyncpg.connect(settings.pg_dsn(), timeout=timeout_seconds)
        try:
            await conn.fetchval("SELECT 1", timeout=timeout_seconds)
        finally:
            await conn.close(timeout=timeout_seconds)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return PartHealth(ok=False, detail=f"{type(error).__name__}: {error}")
    return PartHealth(ok=True, detail=f"{settings.pg_host}:{settings.pg_port}")


async def kafka_health(settings: Settings) -> PartHealth:
    servers = settings.kafka_bootstrap_servers()
    timeout_seconds = settings.kafka_request_timeout_seconds
    tls = tls_context(settings)
    for host, port in servers:
        if await asyncio.to_thread(broker_answers, host, port, timeout_seconds, tls):
            return PartHealth(ok=True, detail=f"{host}:{port}")
    return PartHealth(ok=False, detail=f"no broker answers at {settings.kafka_bootstrap}")
