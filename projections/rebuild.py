"""Online rebuild of one projection: blue/green, so reads keep working all along.

1. Build: replay the whole log into shadow tables (`<table>__shadow`), in large batches, the
   state kept in memory across batches (bounded: the oldest accounts are evicted and reloaded
   from the shadow tables when needed). Reading the next page and committing the previous batch
   overlap with decoding and applying.
2. Swap, in one transaction that holds the live projection's tracking row (so the live
   projector waits): bring whichever side is behind up to the other's position, checksum both,
   drop the live tables and rename the shadows in. Readers wait for the few milliseconds of the
   swap, then read the new tables. If the gap is too large to close under the lock, it is closed
   outside first and the swap is tried again (a bounded number of rounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from infra.metrics import PROJECTION_SKIPPED_EVENTS
from projections.applying import apply_events, apply_in_memory, apply_singly, cannot_apply
from projections.batch import BatchState
from projections.event_log import EventLog, Logged
from projections.projection import Projection
from projections.store import (
    SHADOW_SUFFIX,
    SKIPPED,
    TRACKING,
    Writes,
    advance,
    checksum,
    ensure_tables,
    load,
    shadow_tracking,
    take_writes,
    write,
)

REBUILD_BATCH_EVENTS = 10_000
# Accounts whose state stays in memory between batches of a rebuild.
CACHE_ACCOUNTS = 200_000
# At most this many events are applied while the swap holds the live projection's lock.
SWAP_SLACK_EVENTS = 5_000
SWAP_ROUNDS = 20
# Decoded batches waiting to be applied: bounds the memory read ahead.
DECODED_AHEAD_BATCHES = 2

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    events: int
    build_seconds: float
    position: int
    rebuilt_checksum: str
    live_checksum: str
    swapped: bool
    # Events the rebuilt model went past without applying (rm_skipped_events).
    skipped: int = 0

    @property
    def matches(self) -> bool:
        return self.rebuilt_checksum == self.live_checksum

    @property
    def events_per_second(self) -> float:
        return self.events / self.build_seconds if self.build_seconds > 0 else 0.0


class ShadowBuilder:
    """Replays the log into a projection's shadow tables; `position` is how far it got."""

    def __init__(
        self,
        log: EventLog,
        projection: Projection,
        *,
        batch_events: int = REBUILD_BATCH_EVENTS,
        cache_accounts: int = CACHE_ACCOUNTS,
    ) -> None:
        self.log = log
        self.projection = projection
        self.batch_events = batch_events
        self.cache_accounts = cache_accounts
        self.state = BatchState(projection.tables)
        self.position = 0
        self.events = 0
        # Events gone past without being applied (recorded in rm_skipped_events).
        self.skipped = 0
        self.tracking = shadow_tracking(projection.name)
        # The shadow tables start empty: only accounts evicted from memory have rows to reload.
        self.evicted: set[str] = set()

    async def reset(self, conn: asyncpg.Connection) -> None:
        for table in self.projection.tables:
            await conn.execute(f"DROP TABLE IF EXISTS {table.name}{SHADOW_SUFFIX}")
        await conn.execute(f"DELETE FROM {TRACKING} WHERE projection = $1", self.tracking)
        await ensure_tables(conn, [self.projection], SHADOW_SUFFIX)
        await conn.execute(f"DELETE FROM {SKIPPED} WHERE projection = $1", self.tracking)

    async def build(
        self, reader: asyncpg.Connection, writer: asyncpg.Connection, upto: int, progress: Progress
    ) -> None:
        """Apply every event up to `upto`, each batch committed with the shadow's position.

        Reading the next pages and committing the previous batch overlap with decoding and
        applying this one. A batch holding an event that cannot be applied (or whose commit
        PostgreSQL refuses for a value) is applied again one event at a time, as the live
        projector does (`projections/applying.py`), so both skip the same events.
        """
        if self.position >= upto:
            return
        decoded: asyncio.Queue[asyncio.Future[list[Logged]] | None] = asyncio.Queue(
            maxsize=DECODED_AHEAD_BATCHES
        )
        producing = asyncio.ensure_future(self._produce(reader, upto, decoded))
        pending: _Commit | None = None
        # Millions of small, acyclic objects: the cyclic collector would rescan the growing
        # state on every generation-2 pass (a third of the time); it runs once at the end.
        gc.disable()
        try:
            while (decoding := await decoded.get()) is not None:
                logged = await decoding
                try:
                    writes = await self._apply_in_memory(writer, logged, pending)
                    committed = pending is None or await pending.done()
                except Exception as error:
                    if not cannot_apply(error):
                        raise
                    committed = False
                if committed:
                    start, self.position = self.position, logged[-1].position
                    pending = _Commit(
                        asyncio.ensure_future(self._commit(writer, writes, start, self.position)),
                        logged,
                        start,
                    )
                else:
                    await self._apply_singly(writer, pending, logged)
                    pending = None
                self.events += len(logged)
                progress(len(logged))
            await producing
            if pending is not None and not await pending.done():
                await self._apply_singly(writer, pending, [])
            pending = None
        finally:
            gc.enable()
            producing.cancel()
            if pending is not None:
                with contextlib.suppress(Exception):  # the error in flight is the one to report
                    await pending.task
            gc.collect()

    async def _apply_in_memory(
        self, writer: asyncpg.Connection, logged: list[Logged], pending: _Commit | None
    ) -> Writes:
        missing = self.state.missing(item.event.originator_id for item in logged)
        stored = [a for a in missing if a in self.evicted]
        for account_id in missing:
            if account_id not in self.evicted:
                self.state.load(account_id, {})
        if stored:
            if pending is not None:
                await pending.task  # the rows to reload may be in it
            await load(writer, self.state, stored, SHADOW_SUFFIX)
        apply_in_memory(self.projection, self.state, logged)
        writes = take_writes(self.state)
        self.evicted.update(self.state.evict(self.cache_accounts))
        return writes

    async def _apply_singly(
        self, writer: asyncpg.Connection, pending: _Commit | None, logged: list[Logged]
    ) -> None:
        """After a batch failed: the state in memory may hold part of it, so it starts again
        from the stored rows, and the events not committed yet are applied one at a time."""
        again = list(logged)
        if pending is not None and not await pending.done():
            # Its commit was rolled back: its events are applied again, from its start.
            again = [*pending.logged, *again]
            self.position = pending.start
        self._forget_state()
        if not again:
            return
        async with writer.transaction():
            applied = await apply_singly(
                writer,
                self.projection,
                again,
                tracking=self.tracking,
                expected=self.position,
                suffix=SHADOW_SUFFIX,
            )
        self.position = applied.position
        self.skipped += applied.skipped
        self.evicted.update(item.event.originator_id for item in again)

    def _forget_state(self) -> None:
        """Drop the rows in memory: the accounts they belong to are reloaded when needed."""
        self.evicted.update(self.state.loaded_accounts())
        self.state = BatchState(self.projection.tables)

    async def _produce(
        self,
        reader: asyncpg.Connection,
        upto: int,
        decoded: asyncio.Queue[asyncio.Future[list[Logged]] | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        after = self.position
        for _ in range(upto - after + 1):  # each page moves at least one event on
            rows = await self._fetch(reader, after, upto)
            if not rows:
                break
            after = rows[-1][0]
            future = loop.create_future()
            future.set_result(self.log.decode(rows))
            await decoded.put(future)
            if after >= upto:
                break
        await decoded.put(None)

    async def apply_in(self, conn: asyncpg.Connection, upto: int) -> None:
        """In the caller's transaction (the swap): apply the events up to `upto`."""
        rows = await self.log.fetch_range(conn, self.position, upto)
        if not rows:
            return
        logged = self.log.decode(rows)
        applied = await apply_events(
            conn,
            self.projection,
            self.state,
            logged,
            tracking=self.tracking,
            expected=self.position,
            suffix=SHADOW_SUFFIX,
        )
        if applied.skipped:
            self._forget_state()
        self.position = applied.position
        self.skipped += applied.skipped
        self.events += len(logged)

    async def _fetch(self, conn: asyncpg.Connection, after: int, upto: int) -> list[asyncpg.Record]:
        rows = await self.log.fetch(conn, after, self.batch_events)
        return [row for row in rows if row[0] <= upto]

    async def _commit(self, conn: asyncpg.Connection, writes: Writes, start: int, new: int) -> None:
        async with conn.transaction():
            await advance(conn, self.tracking, start, new)
            await write(conn, writes, SHADOW_SUFFIX)


@dataclass
class _Commit:
    """A batch's writes being committed while the next batch is applied."""

    task: asyncio.Future[None]
    logged: list[Logged]
    # The shadow's position before it.
    start: int

    async def done(self) -> bool:
        """Whether it committed; False if PostgreSQL refused a value of it (rolled back)."""
        try:
            await self.task
        except Exception as error:
            if not cannot_apply(error):
                raise
            return False
        return True


async def rebuild(
    pool: asyncpg.Pool,
    log: EventLog,
    projection: Projection,
    *,
    progress: Progress = lambda _: None,
    batch_events: int = REBUILD_BATCH_EVENTS,
) -> RebuildResult:
    builder = ShadowBuilder(log, projection, batch_events=batch_events)
    return await _rebuild(pool, log, builder, progress)


async def _rebuild(
    pool: asyncpg.Pool, log: EventLog, builder: ShadowBuilder, progress: Progress
) -> RebuildResult:
    projection = builder.projection
    async with pool.acquire() as reader, pool.acquire() as writer:
        await ensure_tables(writer, [projection])
        await builder.reset(writer)
        started = time.perf_counter()
        await builder.build(reader, writer, await log.max_position(reader), progress)
        build_seconds = time.perf_counter() - started
        for _ in range(SWAP_ROUNDS):
            await builder.build(reader, writer, await log.max_position(reader), progress)
            result = await _swap(writer, log, builder)
            if result is not None:
                rebuilt, live = result
                return RebuildResult(
                    projection=projection.name,
                    events=builder.events,
                    build_seconds=build_seconds,
                    position=builder.position,
                    rebuilt_checksum=rebuilt,
                    live_checksum=live,
                    swapped=True,
                    skipped=builder.skipped,
                )
            await _catch_up_live(writer, log, projection, builder.position)
    raise RuntimeError(f"{projection.name}: could not swap in {SWAP_ROUNDS} rounds")


async def _swap(
    conn: asyncpg.Connection, log: EventLog, builder: ShadowBuilder
) -> tuple[str, str] | None:
    """The checksums (rebuilt, live) once swapped; None if the sides are too far apart."""
    projection = builder.projection
    async with conn.transaction():
        live = await conn.fetchval(
            f"SELECT position FROM {TRACKING} WHERE projection = $1 FOR UPDATE", projection.name
        )
        if abs(live - builder.position) > SWAP_SLACK_EVENTS:
            return None
        if builder.position < live:
            await builder.apply_in(conn, live)
        elif live < builder.position:
            await _apply_live(conn, log, projection, live, builder.position)
        rebuilt = await checksum(conn, projection, SHADOW_SUFFIX)
        current = await checksum(conn, projection)
        for table in projection.tables:
            await conn.execute(f"DROP TABLE {table.name}")
            await conn.execute(f"ALTER TABLE {table.name}{SHADOW_SUFFIX} RENAME TO {table.name}")
            await conn.execute(
                f"ALTER INDEX {table.name}{SHADOW_SUFFIX}_pkey RENAME TO {table.name}_pkey"
            )
        await conn.execute(f"DELETE FROM {TRACKING} WHERE projection = $1", builder.tracking)
        # The events the rebuilt model went past are now the live one's.
        await conn.execute(f"DELETE FROM {SKIPPED} WHERE projection = $1", projection.name)
        await conn.execute(
            f"UPDATE {SKIPPED} SET projection = $1 WHERE projection = $2",
            projection.name,
            builder.tracking,
        )
    return rebuilt, current


async def _apply_live(
    conn: asyncpg.Connection, log: EventLog, projection: Projection, start: int, upto: int
) -> None:
    rows = await log.fetch_range(conn, start, upto)
    applied = await apply_events(
        conn,
        projection,
        BatchState(projection.tables),
        log.decode(rows),
        tracking=projection.name,
        expected=start,
    )
    if applied.skipped:
        PROJECTION_SKIPPED_EVENTS.labels(projection.name).inc(applied.skipped)


async def _catch_up_live(
    conn: asyncpg.Connection, log: EventLog, projection: Projection, upto: int
) -> None:
    """The live projection is far behind (no projector running): bring it to `upto` in the
    projector's own batches (each exactly once against a projector that starts meanwhile)."""
    rounds = upto // REBUILD_BATCH_EVENTS + 2
    for _ in range(rounds):
        async with conn.transaction():
            live = await conn.fetchval(
                f"SELECT position FROM {TRACKING} WHERE projection = $1 FOR UPDATE",
                projection.name,
            )
            if live >= upto:
                return
            end = min(upto, live + REBUILD_BATCH_EVENTS)
            await _apply_live(conn, log, projection, live, end)
