"""`GET /v1/accounts/{id}/changes`: server-sent events telling a page that the account changed
(services/api/changes.py). A portal token's stream ends when the token expires."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Security
from fastapi.responses import StreamingResponse

from services.api.auth import PORTAL, Caller, PortalCaller, authorize
from services.api.changes import MAX_STREAM_SECONDS, TooManySubscribers
from services.api.errors import TOO_MANY_STREAMS, HttpError
from services.api.resources import Resources, app_resources
from services.api.routers.accounts import MAX_POSITION, READ_ERRORS, AccountId

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["accounts"], responses=READ_ERRORS)


@router.get(
    "/changes",
    operation_id="streamAccountChanges",
    summary="Server-sent events: `changed` {account_id, position} when the read models moved",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"}},
    openapi_extra=PORTAL,
)
async def stream_changes(
    account_id: AccountId,
    caller: Annotated[Caller, Security(authorize, scopes=["read"])],
    held: Annotated[Resources, Depends(app_resources)],
    since: Annotated[
        int,
        Query(ge=0, le=MAX_POSITION, description="the position the page last drew (default 0)"),
    ] = 0,
) -> StreamingResponse:
    # An account the read models do not have yet (opened a moment ago) is no error: its first
    # `changed` comes when they do.
    pool = await held.pool()
    lifetime_seconds = MAX_STREAM_SECONDS
    if isinstance(caller, PortalCaller):
        lifetime_seconds = min(lifetime_seconds, caller.token.expires_at - time.time())
    frames = held.changes.stream(pool, account_id, time.monotonic() + lifetime_seconds, since)
    try:
        first = await anext(frames)
    except TooManySubscribers as full:
        raise HttpError(503, TOO_MANY_STREAMS, str(full), {"Retry-After": "5"}) from None

    async def body():  # type: ignore[no-untyped-def]
        yield first
        async for frame in frames:
            yield frame

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
