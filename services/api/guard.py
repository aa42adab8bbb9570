"""An ASGI guard in front of the app: refuses, with the error shape, what would make Starlette
fail before any route or error handler runs (a query string that is not UTF-8)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.errors import INVALID_REQUEST, error_body


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _problem(scope)
            if problem is not None:
                await _refuse(send, 400, INVALID_REQUEST, problem)
                return
        await self.app(scope, receive, send)


def _problem(scope: Scope) -> str | None:
    try:
        scope.get("query_string", b"").decode("utf-8")
    except UnicodeDecodeError:
        return "query string: not UTF-8"
    return None


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
