"""Operational endpoints: `/healthz` (are the parts up), `/readyz` (can this process serve),
`/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from infra.metrics import PROJECTION_LAG, PROJECTION_POSITION, REGISTRY
from infra.readiness import READINESS
from projections.store import TRACKING
from services.api.health import kafka_health, postgres_health
from services.api.models import ComponentReadiness, Readiness
from services.api.resources import Resources


async def healthz(request: Request) -> JSONResponse:
    settings = request.app.state.resources.settings
    postgres, kafka = await asyncio.gather(postgres_health(settings), kafka_health(settings))
    parts = {
        "postgres": {"ok": postgres.ok, "detail": postgres.detail},
        "kafka": {"ok": kafka.ok, "detail": kafka.detail},
    }
    ok = postgres.ok and kafka.ok
    failing = sorted(name for name, part in parts.items() if not part["ok"])
    body = {"status": "ok" if ok else "unavailable", "failing": failing, "parts": parts}
    return JSONResponse(body, status_code=200 if ok else 503)


async def readyz(request: Request) -> JSONResponse:
    resources: Resources = request.app.state.resources
    timeout_seconds = resources.settings.pg_connect_timeout_seconds
    try:
        pool = await resources.pool()
        async with pool.acquire(timeout=timeout_seconds) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout_seconds)
        database = ComponentReadiness(ready=True, detail="answers")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        database = ComponentReadiness(ready=False, detail=f"{type(error).__name__}: {error}")
    components = {
        name: ComponentReadiness(ready=state.ready, detail=state.detail)
        for name, state in sorted(READINESS.snapshot().items())
    }
    ready = database.ready and all(c.ready for c in components.values())
    body = Readiness(
        status="ready" if ready else "not_ready", database=database, components=components
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    resources: Resources = request.app.state.resources
    # The projector may run in another process: read its lag from the database at scrape time.
    try:
        pool = await resources.pool()
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT projection, position, "
                f"(SELECT coalesce(max(notification_id), 0) FROM ledger_events) AS head "
                f"FROM {TRACKING} WHERE projection NOT LIKE '%\\_\\_shadow'"
            )
        for row in rows:
            PROJECTION_POSITION.labels(row["projection"]).set(row["position"])
            PROJECTION_LAG.labels(row["projection"]).set(max(row["head"] - row["position"], 0))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pass  # the other metrics are still worth serving
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
