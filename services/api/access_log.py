"""The API's access log and HTTP metrics: one line and one observation per request.

The line names the route template (`/v1/accounts/{account_id}`), never the path as sent nor
its query string (a portal token may travel in either) and no header (Authorization holds the
key). Plain ASGI rather than Starlette's middleware, which costs a task per request.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.metrics import HTTP_REQUESTS, HTTP_SECONDS

log = structlog.get_logger("credits.api.access")

# A request no route matched is labelled so, not by its path: labels stay bounded.
UNMATCHED = "unmatched"


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            route = _route(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(seconds)
            log.info(
                "request",
                method=method,
                route=route,
                status=status,
                latency_ms=round(seconds * 1000, 1),
            )


def _route(scope: Scope) -> str:
    # FastAPI puts the matched route in the scope as it routes; the template, not the path.
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
