"""The HTTP API (Starlette). For now: `/healthz`; reads and commands come with their issues."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from infra.settings import Settings
from services.api.health import kafka_health, postgres_health


def create_app(settings: Settings) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        postgres, kafka = await asyncio.gather(postgres_health(settings), kafka_health(settings))
        parts = {
            "postgres": {"ok": postgres.ok, "detail": postgres.detail},
            "kafka": {"ok": kafka.ok, "detail": kafka.detail},
        }
        ok = postgres.ok and kafka.ok
        failing = sorted(name for name, part in parts.items() if not part["ok"])
        body = {"status": "ok" if ok else "unavailable", "failing": failing, "parts": parts}
        return JSONResponse(body, status_code=200 if ok else 503)

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])
