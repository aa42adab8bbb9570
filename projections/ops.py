"""What the ops commands read: projection status, and one account's stream and read models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.integration import cloud_event_type, event_data
from projections import queries
from projections.account_at import account_at, describe
from projections.event_log import Logged, UndecodableEvent
from projections.read_side import ReadSide
from projections.store import TRACKING, skipped_counts

# `credits account show` prints at most this many of the newest events.
MAX_SHOWN_EVENTS = 1000
# As the HTTP read's `resources`: a bound on what one account's report lists.
MAX_SHOWN_RESOURCES = 500


@dataclass(frozen=True)
class Status:
    projection: str
    position: int
    lag_events: int
    last_error: str | None
    error_at: datetime | None
    updated_at: datetime | None
    # Events it went past without applying them (rm_skipped_events).
    skipped_events: int


async def status(read_side: ReadSide) -> tuple[int, list[Status]]:
    """(head of the event log, a row per projection, rebuild shadows included)."""
    async with read_side.pool.acquire() as conn:
        head = await read_side.log.max_position(conn)
        rows = await conn.fetch(f"SELECT * FROM {TRACKING} ORDER BY projection")
        skipped = await skipped_counts(conn)
    return head, [
        Status(
            projection=row["projection"],
            position=row["position"],
            lag_events=max(head - row["position"], 0),
            last_error=row["last_error"],
            error_at=row["error_at"],
            updated_at=row["updated_at"],
            skipped_events=skipped.get(row["projection"], 0),
        )
        for row in rows
    ]


async def account_report(read_side: ReadSide, account_id: str, events: int) -> dict[str, Any]:
    """The newest `events` of the stream, and the read models' account, balances, lots, holds
    and resources."""
    limit = max(1, min(events, MAX_SHOWN_EVENTS))
    async with read_side.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM (SELECT notification_id, originator_id, originator_version, topic, "
            f"state FROM {read_side.log.table} WHERE originator_id = $1 "
            "ORDER BY originator_version DESC LIMIT $2) s ORDER BY originator_version",
            account_id,
            limit,
        )
        stream = [_shown(item) for item in read_side.log.decode(rows)]
        return {
            "account": await queries.account(conn, account_id),
            "balances": await queries.balances(conn, account_id),
            "lots": await queries.lots(conn, account_id),
            "holds": await queries.holds(conn, account_id),
            # The account's own limits, and what each resource used on today's UTC day.
            "resources": await queries.resources(
                conn, account_id, datetime.now(UTC).date(), MAX_SHOWN_RESOURCES
            ),
            "stream": stream,
        }


async def account_report_at(
    read_side: ReadSide, account_id: str, events: int, at: datetime
) -> dict[str, Any] | None:
    """The account as the ledger recorded it at `at` (its stored events up to then, folded),
    and the newest `events` of its stream up to then; None if it had not opened by then."""
    limit = max(1, min(events, MAX_SHOWN_EVENTS))
    async with read_side.pool.acquire() as conn:
        fold = await account_at(conn, read_side.log.mapper, account_id, at)
        if fold is None or fold.account is None or fold.position is None:
            return None
        rows = await conn.fetch(
            "SELECT * FROM (SELECT notification_id, originator_id, originator_version, topic, "
            f"state FROM {read_side.log.table} WHERE originator_id = $1 "
            "AND originator_version <= $2 ORDER BY originator_version DESC LIMIT $3) s "
            "ORDER BY originator_version",
            account_id,
            fold.account.version,
            limit,
        )
    seen = describe(fold.account, read_side.catalog, at, fold.position, fold.reserved_at)
    return {**seen, "stream": [_shown(item) for item in read_side.log.decode(rows)]}


def _shown(item: Logged) -> dict[str, Any]:
    event = item.event
    shown: dict[str, Any] = {"version": event.originator_version, "position": item.position}
    if isinstance(event, UndecodableEvent):
        data = {"topic": event.topic, "error": event.error}
        return {**shown, "at": None, "type": "undecodable", "data": data}
    return {
        **shown,
        "at": event.timestamp,
        "type": cloud_event_type(event),
        "data": event_data(event),
    }
