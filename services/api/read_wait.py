"""A read's `min_position`: the pool, once the read models a route uses have applied it.

Every read route takes `min_position` (a reply's position) to read its own writes; they share
this one wait.
"""

from __future__ import annotations

import asyncpg

from projections import queries
from services.api.errors import READ_MODEL_BEHIND, HttpError, invalid
from services.api.log_head import events_head
from services.api.resources import Resources


async def pool_at(
    held: Resources, projections: tuple[str, ...], min_position: int | None
) -> asyncpg.Pool:
    """The pool, once the read models have reached `min_position` (if asked)."""
    pool = await held.pool()
    if min_position is not None:
        async with pool.acquire() as conn:
            head = await events_head(conn)
        if min_position > head:
            # No reply ever named it: waiting could only end in a 504.
            raise invalid(f"min_position: beyond the event log's head ({head})")
        timeout_seconds = held.settings.read_wait_seconds
        if not await queries.wait_for_position(pool, projections, min_position, timeout_seconds):
            raise HttpError(
                504,
                READ_MODEL_BEHIND,
                f"read model has not reached position {min_position} in {timeout_seconds} s",
            )
    return pool
