"""The payment side's PostgreSQL connections (psycopg, autocommit), in the service's database."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from infra.settings import Settings

POOL_MAX_SIZE = 2


async def open_pool(settings: Settings) -> AsyncConnectionPool[AsyncConnection]:
    """Opened and checked: raises `psycopg_pool.PoolTimeout` (an `OperationalError`) when the
    server does not answer within `CREDITS_PG_CONNECT_TIMEOUT_SECONDS`."""
    pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
        settings.pg_dsn(),
        min_size=1,
        max_size=POOL_MAX_SIZE,
        timeout=settings.pg_connect_timeout_seconds,
        kwargs={"autocommit": True, "connect_timeout": int(settings.pg_connect_timeout_seconds)},
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=settings.pg_connect_timeout_seconds)
    except BaseException:
        await pool.close()
        raise
    return pool
