"""One lock for every `CREATE … IF NOT EXISTS` of the service.

PostgreSQL's `IF NOT EXISTS` is not safe between sessions creating the same table at once: both
see it missing, and the second fails on the catalog (`type "…" already exists`). Components start
together (`credits run all`, a rollout of many pods), so every schema statement runs inside a
transaction holding this transaction-scoped advisory lock: creators take turns, the later ones find
the tables there. The event store's creation takes the same key as a session lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

# Any fixed number, the same in every process of the service: "cred" "tbls".
SCHEMA_LOCK_KEY = 0x63726564_74626C73


@contextlib.asynccontextmanager
async def creating_schema_asyncpg(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction in which this session alone creates schema objects."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        yield
