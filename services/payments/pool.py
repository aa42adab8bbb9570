"""The payment side's PostgreSQL connections (psycopg, autocommit), in the service's database."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from infra.settings import Settings

POOL_MAX_SIZE = 2
# psycopg_pool retries a lost connection with a backoff that doubles without a cap until this
# much time has passed; after it, the next request starts a fresh attempt at once. Short, so a
# server back after an outage of any length is used within seconds (the callers' own retry
# paces the requests).
RECONNECT_SECONDS = 2.0


async def open_pool(settings: Settings) -> AsyncConnectionPool[AsyncConnection]:
    """Opened and checked: raises `psycopg_pool.PoolTimeout` (an `OperationalError`) when the
    server does not answer within `CREDITS_PG_CONNECT_TIMEOUT_SECONDS`."""
    pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
        settings.pg_dsn(),
        min_size=1,
        max_size=POOL_MAX_SIZE,
        timeout=settings.pg_connect_timeout_seconds,
        kwargs={"autocommit": True, "connect_timeout": int(settings.pg_connect_timeout_seconds)},
        # A connection that broke while idle (a server restart) is found before it is used.
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=min(RECONNECT_SECONDS, settings.pg_connect_timeout_seconds),
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=settings.pg_connect_timeout_seconds)
    except BaseException:
        await pool.close()
        raise
    return pool
