"""The projector: follows the event store and applies new events to every read model.

It wakes on the recorder's NOTIFY (LISTEN on the events table's channel), and polls every
`poll_seconds` as well, in case a notification is missed (they are not queued while the
listener reconnects). A database outage is retried with infra/retry.py for as long as it lasts:
not ready meanwhile, back within a retry pause of the server.

Each projection is applied in its own transaction per batch, so one failing projection (its
error recorded in `rm_tracking`) does not hold the others back. An event a projection cannot
apply is skipped and recorded (`projections/applying.py`), never retried for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg
import structlog

from infra.metrics import PROJECTION_LAG, PROJECTION_POSITION, PROJECTION_SKIPPED_EVENTS
from infra.outages import ASYNCPG_OUTAGE
from infra.readiness import READINESS
from infra.retry import Stopped, retry, until_stopped
from projections.applying import apply_events
from projections.batch import BatchState
from projections.event_log import EventLog, Logged
from projections.projection import Projection
from projections.store import PositionMoved, positions, record_error

log = structlog.get_logger("credits.projector")

# A failing pass waits before the next, doubling up to this: a poison event is retried, slowly.
MAX_BACKOFF_SECONDS = 30.0
LISTEN_CONNECT_SECONDS = 5.0
LISTENER_CLOSE_SECONDS = 2.0
COMPONENT = "projector"
# NOTIFYed in each batch's transaction (so delivered at its commit) with `<projection>:<position>`:
# the API's change feed (services/api/changes.py) tells open pages that a read model moved.
PROJECTED_CHANNEL = "credits_projected"


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
        self._listener: asyncpg.Connection | None = None

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
        """Follows the event store until `stop`. A lost connection (the database restarting,
        a pooled or LISTEN connection it closed) is retried for as long as it takes, not ready
        meanwhile; every pass opens what it needs again, so nothing stale survives an outage."""
        notified = asyncio.Event()
        READINESS.register(COMPONENT)
        backoff_seconds = 0.0
        try:
            while not stop.is_set():
                most, failures = await retry(
                    lambda: until_stopped(self._pass(notified), stop, "projecting events"),
                    doing="projecting events",
                    retry_on=ASYNCPG_OUTAGE,
                    stop=stop,
                    on_state=READINESS.reporter(COMPONENT),
                    before_retry=self._drop_connections,
                )
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
        except Stopped:
            pass
        finally:
            READINESS.report(COMPONENT, ready=False, detail="stopped")
            await self._close_listener()

    async def _pass(self, notified: asyncio.Event) -> tuple[int, int]:
        """One step, LISTENing first if the listener is gone: (most events read, failures)."""
        if self.listen_dsn is not None and (self._listener is None or self._listener.is_closed()):
            self._listener = await self._listen(self.listen_dsn, notified)
        try:
            return await self.step()
        except ASYNCPG_OUTAGE:
            raise
        except asyncpg.PostgresError as error:
            # Not an outage: a statement failed (a rebuild swapping tables, say). Retried, slowly.
            log.warning("projector pass failed", error=str(error))
            READINESS.report(COMPONENT, ready=False, detail=str(error))
            return 0, 1

    async def _drop_connections(self) -> None:
        """Before a retry: connections the server closed must not be handed out again."""
        await self._close_listener()
        await self.pool.expire_connections()

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(*ASYNCPG_OUTAGE):
                await listener.close(timeout=LISTENER_CLOSE_SECONDS)
            listener.terminate()  # if close timed out; a no-op once closed

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
                await conn.execute(
                    "SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{name}:{applied.position}"
                )
            if applied.skipped:
                PROJECTION_SKIPPED_EVENTS.labels(name).inc(applied.skipped)
                log.error("events skipped", projection=name, events=applied.skipped)
        except PositionMoved:
            # A rebuild swapped it in, or another projector ran it: the next pass rereads.
            return True
        except ASYNCPG_OUTAGE:
            raise  # the connection is gone: the pass fails as a whole, and is retried
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

    async def _listen(self, dsn: str, notified: asyncio.Event) -> asyncpg.Connection:
        """A connection of its own that LISTENs; its loss wakes the loop at once, which then
        notices the outage (rather than after a poll interval)."""

        def wake(*_: object) -> None:
            notified.set()

        conn = await asyncpg.connect(dsn, timeout=LISTEN_CONNECT_SECONDS)
        try:
            await conn.add_listener(self.log.channel, wake)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(wake)
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
