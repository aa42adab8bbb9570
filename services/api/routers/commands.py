"""`POST /v1/accounts/{id}/commands`: a command, through Kafka to the ledger, answered
synchronously; `GET /v1/accounts/{id}/commands/{command_id}`: an accepted command's outcome.

The body is the Kafka command JSON; the account id comes from the path (a body naming another
one is refused). The reply is the ledger's (DESIGN §2.3), `position` included for
read-your-writes; its HTTP status follows the outcome: 200 accepted or duplicate, else
`REJECTION_STATUS` of its error code. No reply within `CREDITS_API_COMMAND_TIMEOUT_SECONDS`:
504 with the command id; the command may still be applied, and the outcome read tells.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import asyncpg
from credits_client import InvalidCommand
from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.responses import JSONResponse

from domain.commands import MAX_COMMAND_BYTES
from domain.errors import ErrorCode, LedgerError
from domain.replies import Reply
from infra.metrics import COMMAND_SECONDS, COMMANDS, command_type
from services.api.auth import COMMAND_SCOPES, PORTAL, Caller, authorize, require_command
from services.api.body import read_json_object
from services.api.errors import (
    COMMAND_TIMEOUT,
    REJECTION_STATUS,
    UNKNOWN_COMMAND,
    HttpError,
    error_body,
)
from services.api.gateway import CommandTimedOut
from services.api.models import ACCOUNT_ID_PATTERN, ApiError, CommandOutcome, CommandTimeoutError
from services.api.resources import Resources, app_resources

# The receipts the ledger writes with each accepted command (infra/event_store/recorder.py).
RECEIPTS_TABLE = "ledger_receipts"
# A command id as the ledger takes it (1-128 characters), without control characters.
COMMAND_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"

AccountId = Annotated[str, Path(pattern=ACCOUNT_ID_PATTERN, description="the account id")]
Held = Annotated[Resources, Depends(app_resources)]

_COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": ApiError, "description": "no valid API key or portal token"},
    403: {"model": ApiError, "description": "the key's scope or the token does not allow it"},
    503: {"model": ApiError, "description": "PostgreSQL or Kafka does not answer (Retry-After)"},
}

router = APIRouter(prefix="/v1/accounts/{account_id}/commands", tags=["commands"])


@router.post(
    "",
    operation_id="postCommand",
    summary="A command (the Kafka command JSON; account_id from the path), answered "
    "synchronously by the ledger that owns the account",
    openapi_extra={
        **PORTAL,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Command"}}},
        },
        # From the table auth checks against, so the document cannot fall behind it.
        "x-command-scopes": "; ".join(
            f"{', '.join(t for t, s in COMMAND_SCOPES.items() if s == scope)}: {scope.value}"
            for scope in dict.fromkeys(COMMAND_SCOPES.values())
        )
        + "; any other type: admin; a portal token: request_top_up for its own account",
    },
    responses={
        200: {"model": Reply, "description": "accepted or duplicate"},
        400: {"model": ApiError, "description": "invalid_json: the body is not a JSON object"},
        404: {"model": Reply, "description": "rejected: unknown_account, hold_not_found"},
        409: {
            "model": Reply,
            "description": "rejected by a ledger rule (insufficient_credits, ...)",
        },
        413: {
            "model": ApiError,
            "description": f"payload_too_large: over {MAX_COMMAND_BYTES} bytes",
        },
        422: {
            "model": Reply | ApiError,
            "description": "rejected: invalid_command, unknown_plan, unknown_action (a Reply); "
            "invalid_request: a bad path parameter (an ApiError)",
        },
        **_COMMON,
        504: {"model": CommandTimeoutError, "description": "command_timeout: no reply in time"},
    },
)
async def post_command(
    account_id: AccountId,
    request: Request,
    held: Held,
    caller: Annotated[Caller, Security(authorize, scopes=["write"])],
) -> JSONResponse:
    started = time.perf_counter()
    command = await read_json_object(request, MAX_COMMAND_BYTES)
    require_command(caller, account_id, command.get("type"))
    named = command.setdefault("account_id", account_id)
    if named != account_id:
        return _rejected(command, account_id, "account_id: differs from the path", started)
    if _has_nul(command):
        # PostgreSQL text cannot carry NUL: refused here rather than by the store.
        return _rejected(
            command, account_id, "text fields must not contain NUL characters", started
        )
    try:
        reply = await held.gateway.send(command)
    except InvalidCommand as error:
        return _rejected(command, account_id, str(error), started)
    except CommandTimedOut as timed_out:
        body = error_body(
            COMMAND_TIMEOUT,
            f"no reply from the ledger in {timed_out.timeout_seconds:g} s; the command may still "
            f"be applied: read GET {request.url.path}/{{command_id}}, or send it again with the "
            "same command_id",
            command_id=timed_out.command_id,
        )
        return JSONResponse(body, status_code=504)
    return _answer(reply, command.get("type"), started)


@router.get(
    "/{command_id}",
    operation_id="getCommandOutcome",
    summary="The outcome of an accepted command (its receipt); rejected commands leave none",
    response_model=CommandOutcome,
    openapi_extra=PORTAL,
    responses={
        404: {"model": ApiError, "description": "unknown_command: no receipt (see docs/API.md)"},
        422: {"model": ApiError, "description": "invalid_request: a bad parameter, named"},
        **_COMMON,
    },
    dependencies=[Security(authorize, scopes=["read"])],
)
async def get_command_outcome(
    account_id: AccountId,
    command_id: Annotated[str, Path(pattern=COMMAND_ID_PATTERN, description="the command id")],
    held: Held,
) -> CommandOutcome:
    pool = await held.pool()
    try:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT reply_json, recorded_at FROM {RECEIPTS_TABLE} "
                "WHERE account_id = $1 AND command_id = $2",
                account_id,
                command_id,
            )
    except asyncpg.UndefinedTableError:  # no ledger has run on this database yet
        row = None
    if row is None:
        raise HttpError(
            404,
            UNKNOWN_COMMAND,
            f"no accepted command {command_id} for account {account_id}: it was rejected (a "
            "rejection writes nothing), has not arrived yet, or never was sent; sending it "
            "again with the same command_id is safe and answers its outcome",
        )
    return CommandOutcome(
        command_id=command_id,
        account_id=account_id,
        recorded_at=row["recorded_at"],
        reply=Reply.model_validate_json(row["reply_json"]),
    )


def _rejected(
    command: dict[str, Any], account_id: str, problem: str, started: float
) -> JSONResponse:
    command_id = command.get("command_id")
    reply = Reply.rejected(
        command_id=command_id[:128] if isinstance(command_id, str) else "",
        account_id=account_id,
        error=LedgerError(ErrorCode.invalid_command, problem),
    )
    return _answer(reply, command.get("type"), started)


def _answer(reply: Reply, kind: object, started: float) -> JSONResponse:
    labels = (command_type(kind), reply.status, "http")
    COMMANDS.labels(*labels).inc()
    COMMAND_SECONDS.labels(*labels).observe(time.perf_counter() - started)
    status = 200 if reply.error is None else REJECTION_STATUS.get(reply.error.code, 409)
    return JSONResponse(reply.model_dump(mode="json"), status_code=status)


def _has_nul(value: Any) -> bool:
    """Any NUL in a key or string, at any depth (the parser bounds the depth)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
