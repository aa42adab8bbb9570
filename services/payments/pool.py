"""The payment side's PostgreSQL connections (asyncpg, through `infra.pg_pool`), in the
service's database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from infra.pg_pool import create_pool
from infra.settings import Settings

POOL_MAX_SIZE = 2


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """Opened with one connection: raises one of `infra.outages.ASYNCPG_OUTAGE` when the server
    does not answer within `CREDITS_PG_CONNECT_TIMEOUT_SECONDS`. A connection lost later (a
    server restart) is replaced on its next acquire."""
    return await create_pool(settings, max_size=POOL_MAX_SIZE)


def acquire_timeout_seconds(settings: Settings) -> float:
    """How long a caller waits for a connection of the pool, a new one's connect included
    (`TimeoutError` past it, an outage to the callers, which retry)."""
    return 2 * settings.pg_connect_timeout_seconds


# Gives the pool to read and write through (opened on first call, and again after a failure).
PoolOf = Callable[[], Awaitable[asyncpg.Pool]]
