"""The ops port (`CREDITS_OPS_PORT`): `/healthz`, `/readyz` and `/metrics`, apart from the API.

Every `credits run` process serves it once, whichever components it runs (services/cli/
supervisor.py). The deployment decides who reaches this port (a scraper, the orchestrator's
probes); the public API port carries only its own `/healthz` besides the authenticated routes.

`/healthz` is liveness: 200 while the process serves HTTP at all, whatever its servers do (an
orchestrator restarting a process because Kafka is away would only add a restart to the outage).

`/readyz` answers 200 only if every check passes (e.g. the database answers) and every
component registered in `infra.readiness.READINESS` reports ready, so a load balancer stops
sending traffic to a half-started process. `/metrics` serves the process's one registry
(values read from elsewhere at scrape time are collectors on it: infra/pool_metrics.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from infra.dependencies import kafka_health, postgres_health
from infra.http_serving import serve_until_stopped
from infra.metrics import REGISTRY
from infra.readiness import READINESS
from infra.settings import Settings

# A check answers (ready, detail); one that raises or hangs counts as not ready.
Check = Callable[[], Awaitable[tuple[bool, str]]]
CHECK_TIMEOUT_SECONDS = 5.0


class ComponentReadiness(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ready: bool
    detail: str


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str
    checks: dict[str, ComponentReadiness]
    components: dict[str, ComponentReadiness]


def ops_app(*, checks: Mapping[str, Check] | None = None) -> FastAPI:
    app = FastAPI(
        title="credits ops",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Probes and scrapes are not worth a span each.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    named_checks = dict(checks or {})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        results = await asyncio.gather(*(_run(check) for check in named_checks.values()))
        checked = dict(zip(named_checks, results, strict=True))
        components = {
            name: ComponentReadiness(ready=state.ready, detail=state.detail)
            for name, state in sorted(READINESS.snapshot().items())
        }
        ready = all(c.ready for c in (*checked.values(), *components.values()))
        body = Readiness(
            status="ready" if ready else "not_ready", checks=checked, components=components
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


async def _run(check: Check) -> ComponentReadiness:
    try:
        ready, detail = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as error:
        return ComponentReadiness(ready=False, detail=f"{type(error).__name__}: {error}")
    return ComponentReadiness(ready=ready, detail=detail)


def dependency_checks(settings: Settings, needs: Iterable[str]) -> dict[str, Check]:
    """`/readyz` checks of the servers a process needs ("postgres", "kafka")."""

    async def postgres() -> tuple[bool, str]:
        health = await postgres_health(settings)
        return health.ok, health.detail

    async def kafka() -> tuple[bool, str]:
        health = await kafka_health(settings)
        return health.ok, health.detail

    known: dict[str, Check] = {"postgres": postgres, "kafka": kafka}
    return {name: known[name] for name in sorted(set(needs))}


async def serve_ops(settings: Settings, stop: asyncio.Event, app: FastAPI) -> None:
    """Serves the ops app on CREDITS_OPS_HOST:CREDITS_OPS_PORT until `stop` is set."""
    await serve_until_stopped(app, host=settings.ops_host, port=settings.ops_port, stop=stop)
