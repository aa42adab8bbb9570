"""The asyncpg pool the components of one process share (see infra/process_event_store.py for why,
and the connection budget). Apart from the event-store share so that a component that never
opens the event store (the payment consumer) does not even import it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from infra.pg_pool import create_pool
from infra.settings import Settings


@dataclass
class _PoolShare:
    pool: asyncpg.Pool
    borrowers: int


# By event loop (asyncpg pools cannot cross loops) and database; touched only from that loop.
_PoolKey = tuple[asyncio.AbstractEventLoop, str]
_POOLS: dict[_PoolKey, _PoolShare] = {}
_OPENING: dict[_PoolKey, asyncio.Lock] = {}


async def borrow_pool(settings: Settings) -> asyncpg.Pool:
    """The asyncpg pool of this event loop on `settings`' database, opened on first use."""
    key = (asyncio.get_running_loop(), settings.pg_dsn())
    async with _OPENING.setdefault(key, asyncio.Lock()):
        share = _POOLS.get(key)
        if share is None:
            share = _POOLS[key] = _PoolShare(await create_pool(settings), 0)
        share.borrowers += 1
        return share.pool


async def give_back_pool(pool: asyncpg.Pool) -> None:
    """Closes the pool when its last borrower gives it back."""
    loop = asyncio.get_running_loop()
    key = next(
        (key for key, share in _POOLS.items() if share.pool is pool and key[0] is loop), None
    )
    assert key is not None, "given back a pool this loop did not lend"
    share = _POOLS[key]
    share.borrowers -= 1
    if share.borrowers == 0:
        del _POOLS[key]
        _OPENING.pop(key, None)
        await pool.close()
