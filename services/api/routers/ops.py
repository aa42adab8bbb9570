"""Reads for operators (`ops` keys): the read models' positions, lag and last errors.

`/metrics` and `/readyz` are on the ops port (infra/ops_server.py), not here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Security

from projections.store import TRACKING
from services.api.auth import authorize
from services.api.log_head import events_head
from services.api.models import ApiError, ProjectionsStatus, ProjectionStatus
from services.api.resources import Resources, app_resources

router = APIRouter(
    prefix="/v1/ops",
    tags=["ops"],
    dependencies=[Security(authorize, scopes=["ops"])],
    responses={
        401: {"model": ApiError, "description": "no valid API key"},
        403: {"model": ApiError, "description": "the key is not an ops key"},
        503: {"model": ApiError, "description": "PostgreSQL does not answer (Retry-After)"},
    },
)


@router.get(
    "/projections",
    operation_id="getProjections",
    summary="Every read model's position, its lag behind the event log, and its last error",
    response_model=ProjectionsStatus,
)
async def get_projections(held: Annotated[Resources, Depends(app_resources)]) -> ProjectionsStatus:
    pool = await held.pool()
    async with pool.acquire() as conn:
        head = await events_head(conn)
        rows = await conn.fetch(
            f"SELECT projection, position, last_error, error_at FROM {TRACKING} ORDER BY projection"
        )
    return ProjectionsStatus(
        head=head,
        projections=[
            ProjectionStatus(
                projection=row["projection"],
                position=row["position"],
                lag_events=max(head - row["position"], 0),
                last_error=row["last_error"],
                error_at=row["error_at"],
            )
            for row in rows
        ],
    )
