"""The read models in PostgreSQL (asyncpg): schema, tracking positions, loading and writing.

A batch's writes and its projection's new position commit in one transaction, and the position
only moves from the value the batch started at (`advance`), so an event is applied exactly once
even with two projectors running: the second one's batch fails and starts again from the new
position. Tables are named by the projection's `Table`, plus a suffix for a rebuild's shadows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from eventsourcing.utils import get_topic

from infra.schema_lock import creating_schema_asyncpg
from projections.batch import BatchState, Row
from projections.event_log import Logged
from projections.projection import Projection
from projections.storable import MESSAGE_BYTES, storable_text
from projections.tables import Table

TRACKING = "rm_tracking"
# Events a projection could not apply and went past (projections/applying.py).
SKIPPED = "rm_skipped_events"
SHADOW_SUFFIX = "__shadow"


class PositionMoved(RuntimeError):
    """Another writer advanced the projection since this batch read its position."""


def shadow_tracking(name: str) -> str:
    return f"{name}{SHADOW_SUFFIX}"


async def ensure_tables(
    conn: asyncpg.Connection, projections: Iterable[Projection], suffix: str = ""
) -> None:
    async with creating_schema_asyncpg(conn):
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TRACKING} ("
            "projection text PRIMARY KEY, position bigint NOT NULL, "
            "last_error text, error_at timestamptz, updated_at timestamptz)"
        )
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SKIPPED} ("
            "projection text NOT NULL, position bigint NOT NULL, originator_id text NOT NULL, "
            "originator_version bigint NOT NULL, topic text NOT NULL, error text NOT NULL, "
            "skipped_at timestamptz NOT NULL, PRIMARY KEY (projection, position))"
        )
        for projection in projections:
            for table in projection.tables:
                await conn.execute(table.create_sql(table.name + suffix))
                await _widen(conn, table, table.name + suffix)
            await conn.execute(
                f"INSERT INTO {TRACKING} (projection, position, updated_at) "
                "VALUES ($1, 0, now()) ON CONFLICT (projection) DO NOTHING",
                projection.name + suffix,
            )


async def _widen(conn: asyncpg.Connection, table: Table, name: str) -> None:
    """Columns made before they were `numeric` (bigint) become `numeric`: a one-off rewrite.
    Columns added to a table since it was made are added, null in the rows it holds
    (`credits projections rebuild NAME` fills them)."""
    current = dict(
        await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1",
            name,
        )
    )
    for column, sql_type in table.columns:
        if sql_type.startswith("numeric") and current.get(column) == "bigint":
            await conn.execute(f"ALTER TABLE {name} ALTER COLUMN {column} TYPE numeric")
        if column not in current and current:
            # A column added since the table was made (`rm_balances.spendable`): nullable, so
            # the rows there are keep; `credits projections rebuild NAME` fills it for all.
            loose = sql_type.removesuffix(" NOT NULL")
            await conn.execute(f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {column} {loose}")


async def positions(conn: asyncpg.Connection, names: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        f"SELECT projection, position FROM {TRACKING} WHERE projection = ANY($1::text[])",
        list(names),
    )
    return {row["projection"]: row["position"] for row in rows}


async def advance(conn: asyncpg.Connection, tracking: str, expected: int, new: int) -> None:
    """Move the position from `expected` to `new`; first in a batch's transaction, so the row
    lock it takes orders it against a rebuild's swap."""
    status = await conn.execute(
        f"UPDATE {TRACKING} SET position = $3, last_error = NULL, error_at = NULL, "
        "updated_at = now() WHERE projection = $1 AND position = $2",
        tracking,
        expected,
        new,
    )
    if status != "UPDATE 1":
        raise PositionMoved(f"{tracking}: position is no longer {expected}")


async def record_error(conn: asyncpg.Connection, tracking: str, message: str) -> None:
    await conn.execute(
        f"UPDATE {TRACKING} SET last_error = $2, error_at = now() WHERE projection = $1",
        tracking,
        storable_text(message, MESSAGE_BYTES),
    )


async def record_skip(
    conn: asyncpg.Connection, tracking: str, logged: Logged, message: str
) -> None:
    """Note that `tracking` went past the event at `logged.position` without applying it."""
    event = logged.event
    # The topic it is stored under (an event class may pin an older one than its module path).
    topic = getattr(event, "topic", None) or get_topic(type(event))
    await conn.execute(
        f"INSERT INTO {SKIPPED} (projection, position, originator_id, originator_version, "
        "topic, error, skipped_at) VALUES ($1, $2, $3, $4, $5, $6, now()) "
        "ON CONFLICT (projection, position) DO UPDATE SET error = excluded.error, "
        "skipped_at = excluded.skipped_at",
        tracking,
        logged.position,
        storable_text(str(event.originator_id)),
        int(event.originator_version),
        storable_text(str(topic)),
        storable_text(message, MESSAGE_BYTES),
    )


async def skipped_counts(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(f"SELECT projection, count(*) FROM {SKIPPED} GROUP BY projection")
    return {row[0]: row[1] for row in rows}


async def load(
    conn: asyncpg.Connection, state: BatchState, account_ids: Iterable[str], suffix: str = ""
) -> None:
    """Read into `state` every row of the accounts it does not hold yet."""
    missing = state.missing(account_ids)
    if not missing:
        return
    found: dict[str, dict[str, list[Row]]] = {account_id: {} for account_id in missing}
    for name, rows in state.accounts.items():
        columns = ", ".join(rows.table.column_names)
        records = await conn.fetch(
            f"SELECT {columns} FROM {name}{suffix} WHERE account_id = ANY($1::text[])", missing
        )
        for record in records:
            found[record["account_id"]].setdefault(name, []).append(dict(record))
    for account_id, rows_by_table in found.items():
        state.load(account_id, rows_by_table)


@dataclass
class Writes:
    """A batch's changes as records, taken from the state before the next batch changes it."""

    # table -> (key columns of deleted or replaced rows, records to insert)
    accounts: dict[str, tuple[list[list[Any]], list[tuple[Any, ...]]]] = field(default_factory=dict)
    appended: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    counters: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)


def take_writes(state: BatchState) -> Writes:
    writes = Writes(tables=dict(state.tables))
    for name, rows in state.accounts.items():
        if not rows.changed:
            continue
        table = rows.table
        keys: list[list[Any]] = [[] for _ in table.key]
        records = []
        for key, row in rows.changed.items():
            for column, value in zip(keys, key, strict=True):
                column.append(value)
            if row is not None:
                records.append(_record(table, row))
        writes.accounts[name] = (keys, records)
    for name, appended in state.appended.items():
        if appended:
            writes.appended[name] = [_record(state.tables[name], row) for row in appended]
    for name, counters in state.counters.items():
        if counters:
            table = state.tables[name]
            writes.counters[name] = [_record(table, row) for row in counters.values()]
    state.clear_changes()
    return writes


async def write(conn: asyncpg.Connection, writes: Writes, suffix: str = "") -> None:
    """Store a batch's changes; the caller holds the transaction."""
    for name, (keys, records) in writes.accounts.items():
        table = writes.tables[name]
        arrays = ", ".join(f"${i + 1}::{table.array_type(c)}" for i, c in enumerate(table.key))
        await conn.execute(
            f"DELETE FROM {name}{suffix} WHERE ({', '.join(table.key)}) IN "
            f"(SELECT * FROM unnest({arrays}))",
            *keys,
        )
        if records:
            await conn.copy_records_to_table(
                name + suffix, records=records, columns=table.column_names
            )
    for name, records in writes.appended.items():
        await conn.copy_records_to_table(
            name + suffix, records=records, columns=writes.tables[name].column_names
        )
    for name, records in writes.counters.items():
        await _add_counters(conn, writes.tables[name], records, suffix)


async def _add_counters(
    conn: asyncpg.Connection, table: Table, records: list[tuple[Any, ...]], suffix: str
) -> None:
    # COPY into a session-local table, then one upsert: fast, and arrays of arrays (tags) need
    # no unnest tricks.
    delta = f"{table.name}__delta"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {delta} (LIKE {table.name}) ON COMMIT DELETE ROWS"
    )
    # Emptied first as well: a transaction may write several batches (one per event, in
    # savepoints, when it goes around an event it cannot apply).
    await conn.execute(f"TRUNCATE {delta}")
    await conn.copy_records_to_table(delta, records=records, columns=table.column_names)
    sets = ", ".join(
        f"{c} = t.{c} + excluded.{c}" if c in table.sums else f"{c} = excluded.{c}"
        for c in table.column_names
        if c not in table.key
    )
    await conn.execute(
        f"INSERT INTO {table.name}{suffix} AS t SELECT * FROM {delta} "
        f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {sets}"
    )


def _record(table: Table, row: Row) -> tuple[Any, ...]:
    return tuple(row[column] for column in table.column_names)


async def checksum(conn: asyncpg.Connection, projection: Projection, suffix: str = "") -> str:
    """SHA-256 over every table's rows in key order: equal read models, equal checksums."""
    digest = hashlib.sha256()
    for table in projection.tables:
        order = ", ".join(f"r.{column}" for column in table.key)
        table_digest = await conn.fetchval(
            f"SELECT count(*) || ':' || md5(coalesce(string_agg(md5(r::text), '' "
            f"ORDER BY {order}), '')) FROM {table.name}{suffix} r"
        )
        digest.update(f"{table.name}={table_digest};".encode())
    return digest.hexdigest()[:32]
