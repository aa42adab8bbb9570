"""The locks every `CREATE … IF NOT EXISTS` of the service runs under.

PostgreSQL's `IF NOT EXISTS` is not safe between sessions creating the same table at once: both
see it missing, and the second fails on the catalog (`type "…" already exists`). Components start
together (`credits run all`, a rollout of many pods), so every schema statement runs under an
advisory lock: creators take turns, the later ones find the tables there.

Two keys, for two sets of tables that never reference each other: the read side's and the
payment consumer's (asyncpg, inside a transaction, `SCHEMA_LOCK_KEY`), and the event store's
(psycopg, blocking, `EVENT_STORE_LOCK_KEY`). One key for both deadlocked a process that opened
the event store on its event loop's thread while a coroutine of that loop held the other lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

# Any fixed numbers, the same in every process of the service: "cred" "tbls" and "cred" "evts".
SCHEMA_LOCK_KEY = 0x63726564_74626C73
EVENT_STORE_LOCK_KEY = 0x63726564_65767473


@contextlib.asynccontextmanager
async def creating_schema_asyncpg(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction in which this session alone creates schema objects."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        yield
