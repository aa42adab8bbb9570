"""The read side put together from settings: what `credits run projector`, the ops commands and
the API share (catalog, event log, asyncpg pool, the projections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from domain.catalog import Catalog, load_catalog
from infra.process_event_store import give_back_event_store
from infra.process_pool import borrow_pool, give_back_pool
from infra.settings import Settings
from projections.event_log import EventLog, open_event_log
from projections.projection import Projection
from projections.projector import Projector, ProjectorConfig
from projections.registry import build_projections
from projections.store import ensure_tables


@dataclass(frozen=True)
class ReadSide:
    settings: Settings
    catalog: Catalog
    pool: asyncpg.Pool
    log: EventLog
    projections: dict[str, Projection]

    def projector(self) -> Projector:
        config = ProjectorConfig(
            batch_events=self.settings.projector_batch_events,
            poll_seconds=self.settings.projector_poll_seconds,
        )
        return Projector(
            self.pool, self.log, self.projections, config, listen_dsn=self.settings.pg_dsn()
        )


@asynccontextmanager
async def open_read_side(settings: Settings) -> AsyncIterator[ReadSide]:
    catalog = load_catalog(settings.catalog_path)
    # Constructing the ledger application connects (psycopg) and creates the event tables.
    log, app = await asyncio.to_thread(open_event_log, settings)
    try:
        pool = await borrow_pool(settings)
        try:
            projections = build_projections(catalog)
            async with pool.acquire() as conn:
                await ensure_tables(conn, projections.values())
            yield ReadSide(settings, catalog, pool, log, projections)
        finally:
            await give_back_pool(pool)
    finally:
        await asyncio.to_thread(give_back_event_store, app)
