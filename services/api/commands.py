"""`POST /v1/accounts/{id}/commands`: the Kafka command JSON, answered synchronously.

The account id comes from the path (a body naming another one is refused). The reply is the
§2.3 reply, `position` included for read-your-writes; its HTTP status follows the outcome:
200 accepted or duplicate, else `REJECTION_STATUS` of its error code.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import ErrorCode, LedgerError
from domain.replies import Reply
from infra.metrics import COMMANDS
from services.api import params
from services.api.errors import REJECTION_STATUS
from services.api.resources import Resources

# A command is at most 16 KiB (docs/DOMAIN.md); the body is not read beyond it.
MAX_BODY_BYTES = 16 * 1024


async def post_command(request: Request) -> JSONResponse:
    resources: Resources = request.app.state.resources
    account_id = params.account_id(request)
    command, problem = await _command(request, account_id)
    if problem is not None:
        reply = Reply.rejected(
            command_id=str(command.get("command_id", ""))[:128],
            account_id=account_id,
            error=LedgerError(ErrorCode.invalid_command, problem),
        )
    else:
        service = await resources.service()
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(resources.executor, service.handle, command)
    COMMANDS.labels(reply.status, "http").inc()
    status = 200 if reply.error is None else REJECTION_STATUS.get(reply.error.code, 409)
    return JSONResponse(reply.model_dump(mode="json"), status_code=status)


async def _command(request: Request, account_id: str) -> tuple[dict[str, Any], str | None]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return {}, f"body: at most {MAX_BODY_BYTES} bytes"
    try:
        command = json.loads(body)
    except ValueError:
        return {}, "body: not JSON"
    if not isinstance(command, dict):
        return {}, "body: not a JSON object"
    named = command.setdefault("account_id", account_id)
    if named != account_id:
        return command, "account_id: differs from the path"
    return command, None
