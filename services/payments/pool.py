"""The payment side's PostgreSQL connections: the asyncpg pool of its process
(`infra/process_pool.py`), shared with the other components there, in the service's database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from infra.process_pool import borrow_pool, give_back_pool
from infra.settings import Settings


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """The process's pool (opened with one connection if it is the first borrower): raises one
    of `infra.outages.ASYNCPG_OUTAGE` when the server does not answer within
    `CREDITS_PG_CONNECT_TIMEOUT_SECONDS`. A connection lost later (a server restart) is replaced
    on its next acquire. Give it back with `close_pool`."""
    return await borrow_pool(settings)


async def close_pool(pool: asyncpg.Pool) -> None:
    await give_back_pool(pool)


def acquire_timeout_seconds(settings: Settings) -> float:
    """How long a caller waits for a connection of the pool, a new one's connect included
    (`TimeoutError` past it, an outage to the callers, which retry)."""
    return 2 * settings.pg_connect_timeout_seconds


# Gives the pool to read and write through (opened on first call, and again after a failure).
PoolOf = Callable[[], Awaitable[asyncpg.Pool]]
