"""The `api` component: the public API on CREDITS_HTTP_PORT until the runner's stop (its
process serves `/readyz` and `/metrics` on CREDITS_OPS_PORT: services/cli/supervisor.py)."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI

from infra.http_serving import serve_until_stopped
from infra.settings import Settings
from services.api.app import create_app

log = structlog.get_logger("credits.api")


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
    app = create_app(settings)
    if app.state.resources.portal_tokens.random_secret:
        log.warning(
            "CREDITS_PORTAL_TOKEN_SECRETS is empty: portal tokens use a random secret of this "
            "process, valid only here and until it restarts"
        )
    public = serve_until_stopped(app, host=settings.http_host, port=settings.http_port, stop=stop)
    await asyncio.gather(public, _end_streams(app, stop))


async def _end_streams(app: FastAPI, stop: asyncio.Event) -> None:
    """Open pages' change streams end with the stop, not at the graceful timeout."""
    await stop.wait()
    app.state.resources.changes.end_streams()
