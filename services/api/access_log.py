"""The API's access log, HTTP metrics and server span: one of each per request.

The span continues the request's W3C `traceparent` header, if any (infra/tracing.py), and is
the current span while the route runs: a command sent to the ledger carries its trace.

The line names the route template (`/v1/accounts/{account_id}`), never the path as sent nor
its query string (a portal token may travel in either) and no header (Authorization holds the
key). Plain ASGI rather than Starlette's middleware, which costs a task per request.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.metrics import HTTP_REQUESTS, HTTP_SECONDS
from infra.tracing import TRACER, context_from_traceparent, trace_id_of

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

        method = scope["method"]
        parent = context_from_traceparent(_header(scope, b"traceparent"))
        with TRACER.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, record_exception=False
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                seconds = time.perf_counter() - started
                route = _route(scope)
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_SECONDS.labels(method, route).observe(seconds)
                if span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.request.method", method)
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                log.info(
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    latency_ms=round(seconds * 1000, 1),
                    trace_id=trace_id_of(span),
                )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            found: bytes = value
            return found
    return None


def _route(scope: Scope) -> str:
    # FastAPI puts the matched route in the scope as it routes; the template, not the path.
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
