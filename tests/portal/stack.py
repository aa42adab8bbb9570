"""One seed catalog's stack for the browser tests: a database and topics of its own, the real
ledger (commands through Kafka), the projector, the API served by uvicorn on a free port (the
page, the JSON routes, checkout against the fake Stripe), and an admin key to drive stories."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from domain.catalog import load_catalog
from infra.kafka_topics import delete_topics
from infra.settings import Settings
from projections.read_side import open_read_side
from services.api import keys
from services.api.app import close_app, create_app
from services.api.changes import ChangeFeed
from services.api.gateway import CommandGateway
from tests.api.conftest import PORTAL_SECRET, bearer, create_key
from tests.databases import fresh_database
from tests.kit.ports import free_port
from tests.kit.stripe_fake import FakeStripe
from tests.ledger_harness import RunningLedger, own_topics

CATALOGS = Path(__file__).resolve().parents[2] / "domain" / "catalogs"
START_SECONDS = 30.0


class PortalStack:
    def __init__(
        self, settings: Settings, http: httpx.AsyncClient, admin_key: str, changes: ChangeFeed
    ) -> None:
        self.settings = settings
        self.changes = changes
        self.base_url = f"http://127.0.0.1:{settings.http_port}"
        self.http = http
        self.admin_key = admin_key

    async def command(self, account_id: str, type: str, **fields: Any) -> dict[str, Any]:
        """Sends a command through the API (and so Kafka and the ledger); the accepted reply."""
        body = {"type": type, "command_id": uuid.uuid4().hex, **fields}
        response = await self.http.post(f"/v1/accounts/{account_id}/commands", json=body)
        reply: dict[str, Any] = response.json()
        assert response.status_code == 200 and reply["status"] == "accepted", reply
        return reply

    async def open_account(self, plan: str) -> str:
        account_id = f"user-{uuid.uuid4().hex[:10]}"
        reply = await self.command(account_id, "open_account", plan=plan)
        await self.settled(account_id, reply["position"])
        return account_id

    async def token(self, account_id: str, ttl_seconds: int = 600) -> str:
        response = await self.http.post(
            "/v1/portal-tokens", json={"account_id": account_id, "ttl_seconds": ttl_seconds}
        )
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    async def page_url(self, account_id: str, query: str = "") -> str:
        return f"{self.base_url}/{query}#token={await self.token(account_id)}"

    async def settled(self, account_id: str, position: int) -> dict[str, Any]:
        """The overview once the read models have applied `position`."""
        response = await self.http.get(
            f"/v1/accounts/{account_id}/overview", params={"min_position": position}
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


@contextlib.asynccontextmanager
async def portal_stack(
    run_settings: Settings, catalog_file: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    port = free_port()
    database = f"{run_settings.pg_database}_portal_{catalog_file[5:8]}"
    base = run_settings.model_copy(
        update={
            "pg_database": database,
            "catalog_path": CATALOGS / catalog_file,
            "http_port": port,
            "api_instance_id": f"portal-{uuid.uuid4().hex[:8]}",
            "portal_token_secrets": PORTAL_SECRET,
            # The embedding test's host page is served on localhost (any port).
            "portal_frame_ancestors": "'self' http://localhost:*",
            "stripe_api_key": "sk_test_portal",
            "stripe_api_base": fake_stripe.api_base,
            "checkout_success_url": f"http://127.0.0.1:{port}/?checkout=success",
            "checkout_cancel_url": f"http://127.0.0.1:{port}/?checkout=cancel",
        }
    )
    with fresh_database(run_settings, database):
        settings = await own_topics(base)
        ledger = RunningLedger(settings, catalog=load_catalog(settings.catalog_path))
        await ledger.start()
        stop = asyncio.Event()
        try:
            async with open_read_side(settings) as side:
                projecting = asyncio.create_task(side.projector().run(stop))
                app = create_app(
                    settings, gateway=CommandGateway(settings, delete_reply_topic_on_stop=True)
                )
                config = uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=port,
                    log_config=None,
                    access_log=False,
                    timeout_graceful_shutdown=5,
                )
                server = uvicorn.Server(config)
                serving = asyncio.create_task(server.serve())
                deadline = time.monotonic() + START_SECONDS
                while not server.started:
                    assert time.monotonic() < deadline and not serving.done(), "API did not start"
                    await asyncio.sleep(0.05)
                admin_key = await create_key(settings, keys.Scope.admin, "portal-tests")
                try:
                    async with httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{port}",
                        headers=bearer(admin_key),
                        timeout=30,
                    ) as http:
                        yield PortalStack(settings, http, admin_key, app.state.resources.changes)
                finally:
                    app.state.resources.changes.end_streams()
                    server.should_exit = True
                    try:
                        await asyncio.wait_for(serving, timeout=30)
                        await close_app(app)
                    finally:
                        stop.set()
                        await asyncio.wait_for(projecting, timeout=30)
        finally:
            await ledger.close()
            await delete_topics(settings, settings.all_topics())
