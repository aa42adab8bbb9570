"""The HTTP API (FastAPI): account reads, commands through Kafka, portal tokens, checkout and
the Stripe webhook, `/healthz`; `/openapi.json` and `/docs`. `/metrics` and `/readyz` are on the
ops port of its process (infra/ops_server.py).

`create_app` opens nothing: the pool and the Kafka clients start on first use, so the app can
be built to write its OpenAPI document (`credits openapi`) with no server running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from domain.commands import Command
from infra.settings import Settings
from services.api.access_log import AccessLog
from services.api.auth import PORTAL, Caller, authorize, require_account
from services.api.docs import install_docs
from services.api.errors import install_error_handlers
from services.api.gateway import CommandGateway
from services.api.guard import RequestGuard
from services.api.resources import Resources
from services.api.routers import (
    accounts,
    analytics,
    changes,
    commands,
    health,
    ops,
    page,
    portal_tokens,
)
from services.payments.checkout import CheckoutRequest
from services.payments.http import PaymentRoutes

API_VERSION = "2.0.0"
DESCRIPTION = (
    "Event-sourced credit ledger: account reads, commands, portal tokens, checkout. Every /v1 "
    "route needs `Authorization: Bearer <API key or portal token>` (scopes in docs/API.md). "
    "Errors are JSON {error: {code, message}}."
)
REF = "#/components/schemas/{model}"
# Request bodies read by hand (bounded, parsed strictly), named in the document by reference.
BODY_SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "Command": TypeAdapter(Command),
    "CheckoutRequest": TypeAdapter(CheckoutRequest),
}


async def _checkout_check(
    caller: Annotated[Caller, Depends(authorize)],
) -> Callable[[str], None]:
    return lambda account_id: require_account(caller, account_id)


def create_app(settings: Settings, *, gateway: CommandGateway | None = None) -> FastAPI:
    resources = Resources(settings, gateway=gateway)
    payments = PaymentRoutes(
        settings,
        checkout_access=Security(_checkout_check, scopes=["admin"]),
        checkout_openapi_extra=PORTAL,
        # Checkout reads the read models and its customer table through the API's own pool.
        pool_of=resources.pool,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close_app(app)

    app = FastAPI(
        title="credits",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's own telemetry is off: its span records the query string (a portal token may
        # be in one) and its logs the requests' errors. The access log middleware makes the
        # request's span, named by route template only (services/api/access_log.py).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.resources = resources
    app.state.payments = payments
    for router in (
        accounts.router,
        changes.router,
        commands.router,
        portal_tokens.router,
        ops.router,
        analytics.router,
        page.router,
    ):
        app.include_router(router)
    app.include_router(payments.router)
    app.include_router(health.router)
    install_error_handlers(app)
    app.add_middleware(RequestGuard)
    # Outermost: the guard's refusals are logged and counted too.
    app.add_middleware(AccessLog)
    install_docs(app)
    app.openapi = lambda: _document(app)  # type: ignore[method-assign]
    return app


async def close_app(app: FastAPI) -> None:
    await app.state.resources.close()
    await app.state.payments.close()


def _document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, adapter in BODY_SCHEMAS.items():
            schema = adapter.json_schema(ref_template=REF, mode="validation")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        for variant in schemas["Command"]["oneOf"]:
            # Over HTTP the path names the account: the body may leave account_id out.
            command = schemas[variant["$ref"].rsplit("/", 1)[1]]
            command["required"] = [f for f in command["required"] if f != "account_id"]
        document["components"]["schemas"] = dict(sorted(schemas.items()))
        app.openapi_schema = document
    return app.openapi_schema
