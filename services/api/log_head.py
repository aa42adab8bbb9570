"""The head of the event log: the highest position (notification id) any event has."""

from __future__ import annotations

import asyncpg

# The events table of the ledger application (eventsourcing names it after the application).
EVENTS_TABLE = "ledger_events"


async def events_head(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", EVENTS_TABLE)
    if not exists:  # no ledger has run on this database yet
        return 0
    head: int = await conn.fetchval(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")
    return head
