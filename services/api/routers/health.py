"""`/healthz`: do PostgreSQL and Kafka answer (reported apart). Open: it tells nothing private.

`/readyz` and `/metrics` are on the ops port (infra/ops_server.py).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from infra.dependencies import kafka_health, postgres_health
from services.api.resources import Resources, app_resources

router = APIRouter(tags=["health"])


class PartHealthView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool
    detail: str


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str
    failing: list[str]
    parts: dict[str, PartHealthView]


@router.get(
    "/healthz",
    operation_id="healthz",
    summary="PostgreSQL and Kafka answer (503 names the failing part)",
    response_model=Health,
    responses={503: {"model": Health, "description": "a part does not answer"}},
)
async def healthz(held: Annotated[Resources, Depends(app_resources)]) -> JSONResponse:
    settings = held.settings
    postgres, kafka = await asyncio.gather(postgres_health(settings), kafka_health(settings))
    parts = {
        "postgres": PartHealthView(ok=postgres.ok, detail=postgres.detail),
        "kafka": PartHealthView(ok=kafka.ok, detail=kafka.detail),
    }
    failing = sorted(name for name, part in parts.items() if not part.ok)
    body = Health(status="unavailable" if failing else "ok", failing=failing, parts=parts)
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if failing else 200)
