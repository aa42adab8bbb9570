"""What the API holds: an asyncpg pool (reads, keys, command outcomes), the Kafka gateway for
commands, the portal token signer, the change feed of open pages, the catalog, and the event
mapper that decodes an account's stored events for a read at a past time. Opened on
first use (so an app without lifespan, as in tests, works) and closed by the app's lifespan.
The API holds no event-store application: it never writes events."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from eventsourcing.persistence import Mapper
from fastapi import Request

from domain.catalog import Catalog, load_catalog
from infra.event_mapper import ledger_mapper
from infra.process_pool import borrow_pool, give_back_pool
from infra.settings import Settings
from projections.registry import build_projections
from projections.store import ensure_tables
from services.api.changes import ChangeFeed
from services.api.gateway import CommandGateway
from services.api.keys import ensure_table as ensure_keys_table
from services.api.portal_tokens import PortalTokens


class Resources:
    def __init__(self, settings: Settings, *, gateway: CommandGateway | None = None) -> None:
        self.settings = settings
        self.catalog: Catalog = load_catalog(settings.catalog_path)
        self.gateway = gateway or CommandGateway(settings)
        self.portal_tokens = PortalTokens(settings.portal_token_secret_list())
        self.changes = ChangeFeed(settings.pg_dsn())
        # Decodes stored events for reads at a past time (`?as_of=`); it opens no connection.
        self.mapper: Mapper[Any] = ledger_mapper()
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = await borrow_pool(self.settings)
                    try:
                        async with pool.acquire() as conn:
                            # Reads must work before the projector first ran: empty tables.
                            projections = build_projections(self.catalog).values()
                            await ensure_tables(conn, projections)
                            await ensure_keys_table(conn)
                    except BaseException:
                        await give_back_pool(pool)
                        raise
                    self._pool = pool
        return self._pool

    async def close(self) -> None:
        await self.changes.close()
        if self._pool is not None:
            await give_back_pool(self._pool)
            self._pool = None
        await self.gateway.stop()


def app_resources(request: Request) -> Resources:
    """The app's resources, as a route dependency."""
    found: Resources = request.app.state.resources
    return found
