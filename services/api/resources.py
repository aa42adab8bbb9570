"""What the API holds: an asyncpg pool for reads, the ledger service for commands, and the
threads commands run in. Opened on first use (so an app without lifespan, as in tests, works)
and closed by the app's lifespan."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from domain.catalog import Catalog, load_catalog
from infra.event_store import event_store_env
from infra.ledger_application import LedgerApplication
from infra.pg_pool import create_pool
from infra.settings import Settings
from projections.registry import build_projections
from projections.store import ensure_tables
from services.ledger.service import LedgerService, SystemClock


class Resources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog: Catalog = load_catalog(settings.catalog_path)
        self._pool: asyncpg.Pool | None = None
        self._service: LedgerService | None = None
        self._lock = asyncio.Lock()
        # eventsourcing is synchronous (psycopg): commands run here, one thread per connection
        # the application's pool may hand out, so threads never queue on the pool.
        self.executor = ThreadPoolExecutor(
            max_workers=settings.api_command_threads, thread_name_prefix="command"
        )

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = await create_pool(self.settings)
                    # Reads must work before the projector first ran: empty tables, not errors.
                    async with pool.acquire() as conn:
                        projections = build_projections(self.catalog).values()
                        await ensure_tables(conn, projections)
                    self._pool = pool
        return self._pool

    async def service(self) -> LedgerService:
        if self._service is None:
            async with self._lock:
                if self._service is None:
                    app = await asyncio.to_thread(
                        LedgerApplication, env=event_store_env(self.settings)
                    )
                    self._service = LedgerService(app, self.catalog, SystemClock())
        return self._service

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._service is not None:
            await asyncio.to_thread(self._service.app.close)
            self._service = None
        self.executor.shutdown(wait=False, cancel_futures=True)
