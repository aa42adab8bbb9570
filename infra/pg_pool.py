"""asyncpg pools for the read side (projector, API reads, ops commands).

Every connection reads and writes `numeric` as exact Python ints (`infra/pg_numeric.py`).
"""

from __future__ import annotations

import asyncpg

from infra.pg_numeric import register_numeric_as_int
from infra.pool_metrics import POOLS
from infra.settings import Settings


async def create_pool(settings: Settings, *, max_size: int | None = None) -> asyncpg.Pool:
    size = max_size or settings.pg_pool_size
    pool = await asyncpg.create_pool(
        settings.pg_dsn(),
        min_size=1,
        max_size=size,
        timeout=settings.pg_connect_timeout_seconds,
        # A statement that runs away (a checksum of a huge table aside) must not hold a
        # connection for ever.
        command_timeout=60,
        init=register_numeric_as_int,
    )
    assert pool is not None
    POOLS.track("asyncpg", pool)
    return pool
