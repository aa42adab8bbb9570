"""API errors: JSON `{"error": {"code", "message"}}` with stable codes, on every route.

Every way a request can fail ends here: our own `HttpError`s, FastAPI's validation errors
(never its default `detail` bodies, which also echo the input back), Starlette's 404 and 405
(with `Allow`), unavailable dependencies (503 with `Retry-After`), and, as a last resort, any
other exception (500 `internal`, logged; tests assert no input reaches it).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from domain.errors import ErrorCode
from services.api.route_table import methods_at

log = structlog.get_logger("credits.api")

# HTTP-only codes (docs/API.md), beside the reply codes of DESIGN §2.3.
INVALID_REQUEST = "invalid_request"
INVALID_JSON = "invalid_json"
PAYLOAD_TOO_LARGE = "payload_too_large"
READ_MODEL_BEHIND = "read_model_behind"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
UNKNOWN_COMMAND = "unknown_command"
COMMAND_TIMEOUT = "command_timeout"
DATABASE_UNAVAILABLE = "database_unavailable"
KAFKA_UNAVAILABLE = "kafka_unavailable"
INTERNAL = "internal"
TOO_MANY_STREAMS = "too_many_streams"
AS_OF_IN_FUTURE = "as_of_in_future"

# How long a client should wait before retrying a 503: a restarted dependency is usually back
# within this (the components' retries pause at most 2 s).
RETRY_AFTER_SECONDS = 5

# A command's rejection code -> HTTP status of the synchronous command endpoint.
REJECTION_STATUS: dict[ErrorCode, int] = {
    ErrorCode.unknown_account: 404,
    ErrorCode.hold_not_found: 404,
    ErrorCode.invalid_command: 422,
    ErrorCode.unknown_plan: 422,
    ErrorCode.unknown_action: 422,
    ErrorCode.insufficient_credits: 409,
    ErrorCode.daily_limit_reached: 409,
    ErrorCode.resource_limit_reached: 409,
    ErrorCode.account_exists: 409,
    ErrorCode.not_eligible: 409,
    ErrorCode.hold_expired: 409,
    ErrorCode.hold_limit_reached: 409,
    ErrorCode.limit_above_plan: 409,
    ErrorCode.idempotency_conflict: 409,
}

# The errors of a PostgreSQL that is down, restarting or unreachable (not of a bad query).
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
)


class HttpError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class Unavailable(HttpError):
    """A dependency does not answer: 503 with `Retry-After`; the client retries later."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(503, code, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def unknown_account(account_id: str) -> HttpError:
    return HttpError(404, ErrorCode.unknown_account.value, f"no account {account_id}")


def invalid(message: str) -> HttpError:
    return HttpError(422, INVALID_REQUEST, message)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HttpError, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_starlette_error)
    app.add_exception_handler(KafkaError, _on_kafka_down)
    for error in DATABASE_DOWN:
        app.add_exception_handler(error, _on_database_down)
    app.add_exception_handler(Exception, _on_unexpected)


async def _on_http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HttpError)
    return error_response(error.status, error.code, error.message, error.headers)


async def _on_validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(400, INVALID_JSON, "body: not valid JSON")
    # ("query", "limit") -> "limit"; the input itself is never echoed back.
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "body"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return error_response(422, INVALID_REQUEST, f"{where}: {message}")


async def _on_starlette_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        return error_response(404, NOT_FOUND, f"no route {request.url.path}")
    if error.status_code == 405:
        # Every route at this path (Starlette's own Allow names only the first one's).
        # The path routing matched (`request.url` goes through urlsplit, which drops tabs and
        # newlines: "/v1/accounts/\n" would then match no route and the Allow be empty).
        allowed = methods_at(request.app, request.scope["path"])
        return error_response(
            405,
            METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here; allowed: {', '.join(allowed)}",
            {"Allow": ", ".join(allowed)},
        )
    if error.status_code == 400:
        # FastAPI's "There was an error parsing the body": not UTF-8, nested too deep, ...
        return error_response(400, INVALID_JSON, "body: not valid JSON")
    headers = dict(error.headers) if error.headers else None
    return error_response(error.status_code, INVALID_REQUEST, str(error.detail), headers)


async def _on_kafka_down(_: Request, error: Exception) -> JSONResponse:
    log.warning("kafka unavailable", error=f"{type(error).__name__}: {error}")
    down = Unavailable(KAFKA_UNAVAILABLE, "Kafka does not answer; retry later")
    return await _on_http_error(_, down)


async def _on_database_down(_: Request, error: Exception) -> JSONResponse:
    log.warning("database unavailable", error=f"{type(error).__name__}: {error}")
    down = Unavailable(DATABASE_UNAVAILABLE, "PostgreSQL does not answer; retry later")
    return await _on_http_error(_, down)


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error", path=request.url.path, error=repr(error))
    return error_response(500, INTERNAL, "internal error; see the service log")
