"""API errors: JSON `{"error": {"code", "message"}}` with stable codes and their HTTP status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import ErrorCode

# HTTP-only codes (docs/READ_MODELS.md), beside the reply codes of DESIGN §2.3.
INVALID_REQUEST = "invalid_request"
READ_MODEL_BEHIND = "read_model_behind"
NOT_FOUND = "not_found"
INTERNAL = "internal"

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
    ErrorCode.idempotency_conflict: 409,
}


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unknown_account(account_id: str) -> HttpError:
    return HttpError(404, ErrorCode.unknown_account.value, f"no account {account_id}")


def invalid(message: str) -> HttpError:
    return HttpError(422, INVALID_REQUEST, message)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def on_http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HttpError)
    return error_response(error.status, error.code, error.message)
