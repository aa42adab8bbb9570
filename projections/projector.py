"""The projector: follows the event store and applies new events to every read model.

It wakes on the recorder's NOTIFY (LISTEN on the events table's channel), and polls every
`poll_seconds` as well, in case a notification is missed (they are not queued while the
listener reconnects). Each projection is applied in its own transaction per batch, so one
failing projection (its error recorded in `rm_tracking`) does not hold the others back. An
event a projection cannot apply is skipped and recorded (`projections/applying.py`), never
retried for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg
import structlog

from infra.metrics import PROJECTION_LAG, PROJECTION_POSITION, PROJECTION_SKIPPED_EVENTS
from infra.readiness import READINESS
from projections.applying import apply_events
from projections.batch import BatchState
from projections.event_log import EventLog, Logged
from projections.projection import Projection
from projections.store import PositionMoved, positions, record_error

log = structlog.get_logger("credits.projector")

# A failing pass waits before the next, doubling up to this: a poison event is retried, slowly.
MAX_BACKOFF_SECONDS = 30.0
COMPONENT = "projector"


@dataclass(frozen=True)
class ProjectorConfig:
    # Events per batch: one transaction per projection each. Bounded so a batch stays short.
    batch_events: int = 1000
    # After a notification, wait this long for more events so a burst makes one batch.
    linger_seconds: float = 0.02
    # Polling fallback when no notification comes.
    poll_seconds: float = 1.0


class Projector:
    def __init__(
        self,
        pool: asyncpg.Pool,
        log: EventLog,
        projections: dict[str, Projection],
        config: ProjectorConfig | None = None,
        *,
        listen_dsn: str | None = None,
    ) -> None:
        self.pool = pool
        # LISTEN needs a connection of its own, outside the pool; None: polling only.
        self.listen_dsn = listen_dsn
        self.log = log
        self.projections = projections
        self.config = config or ProjectorConfig()

    async def step(self) -> tuple[int, int]:
        """One batch for every projection that is behind: (most events read, failures)."""
        most = failures = 0
        async with self.pool.acquire() as conn:
            at = await positions(conn, list(self.projections))
            # Projections at the same position share one read (usually all of them).
            for start in sorted(set(at.values())):
                logged = await self.log.read(conn, start, self.config.batch_events)
                most = max(most, len(logged))
                for name in sorted(n for n, p in at.items() if p == start):
                    if logged and not await self._apply(conn, name, start, logged):
                        failures += 1
            await self._report_lag(conn)
        return most, failures

    async def catch_up(self, max_batches: int = 10_000) -> None:
        """Apply everything committed so far (tests, and `credits projections` commands)."""
        for _ in range(max_batches):
            most, failures = await self.step()
            if failures:
                raise RuntimeError("a projection failed: see `credits projections status`")
            if most == 0:
                return
        raise RuntimeError(f"not caught up after {max_batches} batches")

    async def run(self, stop: asyncio.Event) -> None:
        notified = asyncio.Event()
        READINESS.register(COMPONENT)
        listener = await self._listen(notified)
        backoff_seconds = 0.0
        try:
            while not stop.is_set():
                try:
                    most, failures = await self.step()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    log.warning("projector pass failed", error=str(error))
                    READINESS.report(COMPONENT, ready=False, detail=str(error))
                    most, failures = 0, 1
                if failures and not most:
                    backoff_seconds = min(max(backoff_seconds * 2, 0.1), MAX_BACKOFF_SECONDS)
                    await _wait(stop, backoff_seconds)
                    continue
                backoff_seconds = 0.0
                READINESS.report(COMPONENT, ready=True, detail="following the event store")
                if most >= self.config.batch_events:
                    continue  # more is waiting
                await _wait_either(notified, stop, self.config.poll_seconds)
                if notified.is_set():
                    notified.clear()
                    await _wait(stop, self.config.linger_seconds)
        finally:
            READINESS.report(COMPONENT, ready=False, detail="stopped")
            if listener is not None:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await listener.close(timeout=5)

    async def _apply(
        self, conn: asyncpg.Connection, name: str, start: int, logged: list[Logged]
    ) -> bool:
        projection = self.projections[name]
        try:
            async with conn.transaction():
                applied = await apply_events(
                    conn,
                    projection,
                    BatchState(projection.tables),
                    logged,
                    tracking=name,
                    expected=start,
                )
            if applied.skipped:
                PROJECTION_SKIPPED_EVENTS.labels(name).inc(applied.skipped)
                log.error("events skipped", projection=name, events=applied.skipped)
        except PositionMoved:
            # A rebuild swapped it in, or another projector ran it: the next pass rereads.
            return True
        except (asyncpg.InterfaceError, OSError):
            raise  # the connection is gone: the pass fails as a whole
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            log.error("projection failed", projection=name, after=start, error=message)
            await record_error(conn, name, message)
            return False
        return True

    async def _report_lag(self, conn: asyncpg.Connection) -> None:
        end = await self.log.max_position(conn)
        for name, position in (await positions(conn, list(self.projections))).items():
            PROJECTION_POSITION.labels(name).set(position)
            PROJECTION_LAG.labels(name).set(max(end - position, 0))

    async def _listen(self, notified: asyncio.Event) -> asyncpg.Connection | None:
        def wake(*_: object) -> None:
            notified.set()

        if self.listen_dsn is None:
            return None
        try:
            conn = await asyncpg.connect(self.listen_dsn)
            await conn.add_listener(self.log.channel, wake)
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("LISTEN failed; polling only", error=str(error))
            return None
        return conn


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_either(first: asyncio.Event, second: asyncio.Event, seconds: float) -> None:
    waits = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
