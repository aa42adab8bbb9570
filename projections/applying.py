"""Applying logged events to one projection, in the caller's transaction, around any event that
cannot be applied.

An event that cannot be applied for a reason retrying cannot fix (it does not decode, the
projection's code refuses it, PostgreSQL refuses a value it yields) must not stop the
projection for good. The batch is then applied again one event at a time, each in a savepoint:
an event that fails alone is recorded in `rm_skipped_events` (position, stream, version, topic,
error), counted (`credits_projection_skipped_events_total`), and the position moves past it.
Its partial changes are rolled back with its savepoint, so the result is the same whatever the
batch size: the live projector and a rebuild skip the same events and reach the same rows.
Failures retrying can fix (the connection, a lock timeout, a serialization failure) are not
skipped: the batch fails as a whole and is retried, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from projections.batch import BatchState
from projections.event_log import Logged, UndecodableEvent
from projections.projection import Projection
from projections.store import PositionMoved, advance, load, record_skip, take_writes
from projections.store import write as write_changes

# SQLSTATE classes a value causes, which the same value causes again: data exceptions (text
# PostgreSQL cannot hold, out-of-range numbers), integrity violations, program limits (an index
# entry too large).
_VALUE_CLASSES = ("22", "23", "54")


class UnprojectableEvent(ValueError):
    """An event no projection can apply (it did not decode)."""


@dataclass(frozen=True)
class Applied:
    position: int
    # The events gone past without being applied (each recorded in rm_skipped_events).
    skipped: int


def cannot_apply(error: BaseException) -> bool:
    """Whether `error` comes from the events themselves: retrying would fail the same way."""
    if isinstance(error, PositionMoved | OSError | MemoryError):
        return False
    if isinstance(error, asyncpg.PostgresError):
        # asyncpg's own DataError (a query argument it cannot encode) is class 22 as well.
        return str(error.sqlstate or "")[:2] in _VALUE_CLASSES
    if isinstance(error, asyncpg.InterfaceError):
        return False  # the connection's state, not the events'
    # The projection's code refusing an event, or a value COPY cannot encode (OverflowError,
    # TypeError, UnicodeEncodeError).
    return isinstance(error, Exception)


async def apply_batch(
    conn: asyncpg.Connection,
    projection: Projection,
    state: BatchState,
    logged: Sequence[Logged],
    *,
    tracking: str,
    expected: int,
    suffix: str = "",
) -> int:
    """In the caller's transaction: move the position, load, apply, write. The new position.

    Raises on an event that cannot be applied: `apply_events` goes around it."""
    assert logged and logged[0].position > expected
    new = logged[-1].position
    await advance(conn, tracking, expected, new)
    await load(conn, state, (item.event.originator_id for item in logged), suffix)
    apply_in_memory(projection, state, logged)
    await write_changes(conn, take_writes(state), suffix)
    return new


def apply_in_memory(projection: Projection, state: BatchState, logged: Sequence[Logged]) -> None:
    """Apply and finish, the rows already loaded; raises on an event that cannot be applied."""
    for item in logged:
        if isinstance(item.event, UndecodableEvent):
            raise UnprojectableEvent(item.event.error)
        projection.apply(state, item.event, item.position)
    projection.finish(state)


async def apply_events(
    conn: asyncpg.Connection,
    projection: Projection,
    state: BatchState,
    logged: Sequence[Logged],
    *,
    tracking: str,
    expected: int,
    suffix: str = "",
) -> Applied:
    """`apply_batch`, and if an event of the batch cannot be applied, one event at a time,
    skipping those that fail. In the caller's transaction.

    After a skip, `state` is stale (it held the failed batch's changes): a caller that keeps
    state across batches must start it again from the stored rows."""
    try:
        async with conn.transaction():
            position = await apply_batch(
                conn, projection, state, logged, tracking=tracking, expected=expected, suffix=suffix
            )
        return Applied(position, 0)
    except Exception as error:
        if not cannot_apply(error):
            raise
    return await apply_singly(
        conn, projection, logged, tracking=tracking, expected=expected, suffix=suffix
    )


async def apply_singly(
    conn: asyncpg.Connection,
    projection: Projection,
    logged: Sequence[Logged],
    *,
    tracking: str,
    expected: int,
    suffix: str = "",
) -> Applied:
    """Each event in a savepoint of its own, from the stored rows; those that fail skipped."""
    position, skipped = expected, 0
    for item in logged:
        try:
            async with conn.transaction():
                position = await apply_batch(
                    conn,
                    projection,
                    BatchState(projection.tables),
                    [item],
                    tracking=tracking,
                    expected=position,
                    suffix=suffix,
                )
        except Exception as error:
            if not cannot_apply(error):
                raise
            await advance(conn, tracking, position, item.position)
            await record_skip(conn, tracking, item, f"{type(error).__name__}: {error}")
            position = item.position
            skipped += 1
    return Applied(position, skipped)
