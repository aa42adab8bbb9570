"""The analytics read (`ops` or `admin` keys): revenue, credits outstanding, breakage,
conversion and refills over a period of UTC days, from the analytics read model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Security

from projections.analytics_read import analytics
from projections.store import positions
from services.api.analytics_models import AnalyticsReport
from services.api.auth import ANALYTICS, authorize
from services.api.day_range import query_days
from services.api.models import ApiError
from services.api.read_wait import pool_at
from services.api.resources import Resources, app_resources
from services.api.routers.accounts import (
    FirstDay,
    LastDay,
    MinPosition,
)

router = APIRouter(
    prefix="/v1/analytics",
    tags=["analytics"],
    dependencies=[Security(authorize, scopes=[ANALYTICS])],
    responses={
        401: {"model": ApiError, "description": "no valid API key"},
        403: {"model": ApiError, "description": "the key is neither an ops nor an admin key"},
        422: {"model": ApiError, "description": "invalid_request: a bad parameter, named"},
        503: {"model": ApiError, "description": "PostgreSQL does not answer (Retry-After)"},
        504: {"model": ApiError, "description": "read_model_behind: min_position not reached"},
    },
)


@router.get(
    "",
    operation_id="getAnalytics",
    summary="Revenue by pack and currency, breakage, free to paid conversion and refills over "
    "a period of UTC days; credits outstanding now (paid, granted, owed)",
    response_model=AnalyticsReport,
    response_model_by_alias=True,
)
async def get_analytics(
    held: Annotated[Resources, Depends(app_resources)],
    first_day: FirstDay = None,
    last_day: LastDay = None,
    min_position: MinPosition = None,
) -> AnalyticsReport:
    first, last = query_days(first_day, last_day)
    pool = await pool_at(held, ("analytics",), min_position)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        # One snapshot: the figures and the position agree.
        report = await analytics(conn, first, last)
        position = (await positions(conn, ["analytics"])).get("analytics", 0)
    return AnalyticsReport.model_validate(
        {"from": first, "to": last, **report, "position": position}
    )
