"""The HTTP API (Starlette): reads from the read models, synchronous commands, health.

Routes are declared once, as `Operation`s: the app and the OpenAPI document (docs/openapi.json)
are both built from them. Other components add their routes through `extra_routes` (payments:
`/webhooks/stripe`, `/v1/checkout`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from domain.commands import Command
from domain.replies import Reply
from infra.settings import Settings
from services.api import ops, reads
from services.api.commands import post_command
from services.api.errors import INTERNAL, NOT_FOUND, HttpError, error_response, on_http_error
from services.api.models import AccountView, ApiError, Readiness, TransactionsPage, UsagePage
from services.api.openapi import Operation, Param, build_openapi
from services.api.resources import Resources

API_VERSION = "1.0.0"
log = structlog.get_logger("credits.api")

_ACCOUNT = Param(
    "account_id",
    "path",
    {"type": "string", "pattern": r"^[A-Za-z0-9_.:@-]{1,128}$"},
    "the caller's account id",
)
_MIN_POSITION = Param(
    "min_position",
    "query",
    {"type": "integer", "minimum": 0},
    "wait (bounded by CREDITS_READ_WAIT_SECONDS) until the read model has applied this "
    "position (a command reply's `position`); 504 read_model_behind otherwise",
)
_BAD = ("bad parameters: invalid_request, with a message", ApiError)
_UNKNOWN = ("unknown_account", ApiError)
_BEHIND = ("read_model_behind: min_position not reached in time", ApiError)

OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/v1/accounts/{account_id}",
        "getAccount",
        "Balances per credit type, plan, next reset, open holds; a daily plan's usage profile",
        reads.get_account,
        params=(_ACCOUNT, _MIN_POSITION),
        responses={200: ("the account", AccountView), 404: _UNKNOWN, 422: _BAD, 504: _BEHIND},
    ),
    Operation(
        "GET",
        "/v1/accounts/{account_id}/usage",
        "getUsage",
        "Usage per day (or month), action and credit type: count, credits spent, cost",
        reads.get_usage,
        params=(
            _ACCOUNT,
            Param(
                "from",
                "query",
                {"type": "string", "format": "date"},
                "first day, UTC (default: 29 days before `to`)",
            ),
            Param(
                "to",
                "query",
                {"type": "string", "format": "date"},
                "last day, UTC, inclusive (default: today); at most 366 days in all",
            ),
            Param(
                "bucket",
                "query",
                {"type": "string", "enum": ["day", "month"]},
                "rows per day (default) or per month",
            ),
            _MIN_POSITION,
        ),
        responses={200: ("usage", UsagePage), 404: _UNKNOWN, 422: _BAD, 504: _BEHIND},
    ),
    Operation(
        "GET",
        "/v1/accounts/{account_id}/transactions",
        "getTransactions",
        "The account's ledger movements, newest first, with available before and after",
        reads.get_transactions,
        params=(
            _ACCOUNT,
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 200},
                "page size (default 50)",
            ),
            Param(
                "before",
                "query",
                {"type": "string"},
                "the previous page's `next_before`, for the next (older) page",
            ),
            _MIN_POSITION,
        ),
        responses={200: ("a page", TransactionsPage), 404: _UNKNOWN, 422: _BAD, 504: _BEHIND},
    ),
    Operation(
        "POST",
        "/v1/accounts/{account_id}/commands",
        "postCommand",
        "A command (the Kafka command JSON; account_id from the path), answered synchronously",
        post_command,
        params=(_ACCOUNT,),
        body=("Command", TypeAdapter(Command)),
        responses={
            200: ("accepted or duplicate", Reply),
            404: ("rejected: unknown_account, hold_not_found", Reply),
            409: ("rejected by a ledger rule (insufficient_credits, ...)", Reply),
            422: ("rejected: invalid_command, unknown_plan, unknown_action", Reply),
        },
    ),
    Operation(
        "GET",
        "/healthz",
        "healthz",
        "PostgreSQL and Kafka answer (503 names the failing part)",
        ops.healthz,
        responses={200: ("healthy", None), 503: ("a part does not answer", None)},
    ),
    Operation(
        "GET",
        "/readyz",
        "readyz",
        "The database answers and every component of this process reports ready",
        ops.readyz,
        responses={200: ("ready", Readiness), 503: ("not ready", Readiness)},
    ),
    Operation(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus: commands by status, projection lag, DLQ messages",
        ops.metrics,
        responses={200: ("Prometheus text format", None)},
        media_type="text/plain",
    ),
]


def openapi_document() -> dict[str, Any]:
    return build_openapi(OPERATIONS, API_VERSION)


def create_app(settings: Settings, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    resources = Resources(settings)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await resources.close()

    routes: list[BaseRoute] = [Route(op.path, op.handler, methods=[op.method]) for op in OPERATIONS]
    app = Starlette(
        routes=[*routes, *extra_routes],
        lifespan=lifespan,
        exception_handlers={
            HttpError: on_http_error,
            HTTPException: _on_starlette_error,
            Exception: _on_unexpected,
        },
    )
    app.state.resources = resources
    return app


async def _on_starlette_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = NOT_FOUND if error.status_code in (404, 405) else "invalid_request"
    return error_response(error.status_code, code, str(error.detail))


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error", path=request.url.path, error=repr(error))
    return error_response(500, INTERNAL, "internal error; see the service log")
