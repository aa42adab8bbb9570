"""Reads of the read models, for the HTTP API and `credits account show`.

Credits, money and quantities are `numeric` (exact at any size); the read side's pools decode
them as Python ints (`infra/pg_numeric.py`), so no sum here is cast to bigint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from projections.store import TRACKING

# Read-your-writes: how often a read waiting for a position looks again.
WAIT_POLL_SECONDS = 0.02


async def account(conn: asyncpg.Connection, account_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM rm_accounts WHERE account_id = $1", account_id)
    return dict(row) if row is not None else None


async def balances(conn: asyncpg.Connection, account_id: str) -> list[dict[str, Any]]:
    return await _all(
        conn, "SELECT * FROM rm_balances WHERE account_id = $1 ORDER BY credit_type", account_id
    )


async def holds(conn: asyncpg.Connection, account_id: str) -> list[dict[str, Any]]:
    return await _all(
        conn, "SELECT * FROM rm_holds WHERE account_id = $1 ORDER BY hold_id", account_id
    )


async def resources(
    conn: asyncpg.Connection, account_id: str, today: date, limit: int
) -> list[dict[str, Any]]:
    """Resources with a limit of their own or used on `today`: (resource, daily_limit, used)."""
    return await _all(
        conn,
        "SELECT resource, max(daily_limit) AS daily_limit, sum(used) AS used FROM ("
        "SELECT resource, daily_limit, 0 AS used FROM rm_resource_limits WHERE account_id = $1 "
        "UNION ALL SELECT resource, NULL, count FROM rm_usage_resources "
        "WHERE account_id = $1 AND day = $2) r GROUP BY resource ORDER BY resource LIMIT $3",
        account_id,
        today,
        limit,
    )


async def lots(conn: asyncpg.Connection, account_id: str) -> list[dict[str, Any]]:
    return await _all(
        conn,
        "SELECT * FROM rm_lots WHERE account_id = $1 ORDER BY credit_type, priority, lot_id",
        account_id,
    )


async def usage(
    conn: asyncpg.Connection, account_id: str, first: date, last: date, bucket: str
) -> list[dict[str, Any]]:
    """Usage per bucket (`day` or `month`), action and credit type, oldest first."""
    assert bucket in ("day", "month")
    return await _all(
        conn,
        f"SELECT date_trunc('{bucket}', day)::date AS start, action, credit_type, "
        "sum(count) AS count, sum(credits) AS credits, sum(cost) AS cost, max(tags) AS tags "
        "FROM rm_usage_daily WHERE account_id = $1 AND day BETWEEN $2 AND $3 "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        account_id,
        first,
        last,
    )


async def usage_totals(
    conn: asyncpg.Connection, account_id: str, credit_type: str, today: date
) -> tuple[int, dict[str, int]]:
    """(credits spent today, all-time count per action) for one credit type."""
    rows = await conn.fetch(
        "SELECT action, sum(count) AS count, sum(credits) FILTER (WHERE day = $3) AS today "
        "FROM rm_usage_daily WHERE account_id = $1 AND credit_type = $2 "
        "GROUP BY action ORDER BY action",
        account_id,
        credit_type,
        today,
    )
    spent_today = sum(row["today"] or 0 for row in rows)
    return spent_today, {row["action"]: row["count"] for row in rows if row["action"]}


async def spent_since(conn: asyncpg.Connection, account_id: str, first: date) -> dict[str, int]:
    """Credits spent per credit type from the UTC day `first` on (consumes and captures)."""
    rows = await conn.fetch(
        "SELECT credit_type, sum(credits) AS credits FROM rm_usage_daily "
        "WHERE account_id = $1 AND day >= $2 GROUP BY credit_type",
        account_id,
        first,
    )
    return {row["credit_type"]: row["credits"] for row in rows}


async def transactions(
    conn: asyncpg.Connection, account_id: str, before: tuple[int, str] | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; `before` (version, credit type) is where the previous page ended."""
    version, credit_type = before if before is not None else (2**62, "")
    return await _all(
        conn,
        "SELECT * FROM rm_transactions WHERE account_id = $1 "
        "AND (version < $2 OR (version = $2 AND credit_type < $3)) "
        "ORDER BY version DESC, credit_type DESC LIMIT $4",
        account_id,
        version,
        credit_type,
        limit,
    )


async def wait_for_position(
    pool: asyncpg.Pool, projections: Sequence[str], position: int, timeout_seconds: float
) -> bool:
    """True once every named read model has applied `position`; False after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    for _ in range(int(timeout_seconds / WAIT_POLL_SECONDS) + 2):
        async with pool.acquire() as conn:
            reached = await conn.fetchval(
                f"SELECT count(*) FROM {TRACKING} "
                "WHERE projection = ANY($1::text[]) AND position >= $2",
                list(projections),
                position,
            )
        if reached == len(projections):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(WAIT_POLL_SECONDS)
    return False


async def _all(conn: asyncpg.Connection, query: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in await conn.fetch(query, *args)]
