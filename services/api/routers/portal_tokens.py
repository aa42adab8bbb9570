"""`POST /v1/portal-tokens`: an admin key issues a short-lived token for one account's portal
(the Plan & Usage page), which may read that account and start a checkout or top-up for it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Security

from services.api.auth import authorize
from services.api.models import ApiError, PortalTokenIssued, PortalTokenRequest
from services.api.resources import Resources, app_resources

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiError, "description": "invalid_json"},
    401: {"model": ApiError, "description": "no valid API key"},
    403: {"model": ApiError, "description": "the key is not an admin key"},
    413: {"model": ApiError, "description": "payload_too_large"},
    422: {"model": ApiError, "description": "invalid_request: a bad field, named"},
    503: {"model": ApiError, "description": "PostgreSQL does not answer (Retry-After)"},
}

router = APIRouter(prefix="/v1/portal-tokens", tags=["portal"])


@router.post(
    "",
    operation_id="createPortalToken",
    summary="A signed token for one account's portal, valid ttl_seconds (at most 3600)",
    status_code=201,
    response_model=PortalTokenIssued,
    responses=ERRORS,
    dependencies=[Security(authorize, scopes=["admin"])],
)
async def create_portal_token(
    body: PortalTokenRequest, held: Annotated[Resources, Depends(app_resources)]
) -> PortalTokenIssued:
    # No check that the account exists: the token grants nothing an unknown account has, and
    # an account opened a moment ago may not be in the read models yet.
    token = held.portal_tokens.issue(body.account_id, body.ttl_seconds)
    return PortalTokenIssued(
        token=held.portal_tokens.encode(token),
        account_id=token.account_id,
        expires_at=datetime.fromtimestamp(token.expires_at, UTC),
    )
