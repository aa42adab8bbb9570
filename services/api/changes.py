"""The change feed behind `GET /v1/accounts/{id}/changes`: tells open pages that an account's
read models moved, as server-sent events.

The projector NOTIFYs `credits_projected` in each batch's transaction (projections/projector.py).
One LISTEN connection per API process (opened with the first subscriber, again after it is
lost) wakes every subscriber; each then reads its account's position (`rm_accounts`) and the
positions of the read models the page draws from, and says `changed` once all of them have
applied the account's last event. When the LISTEN connection is away, subscribers look every
`FALLBACK_POLL_SECONDS` instead, so a lost notification delays a change, never loses it.

A stopping API ends its streams at once (`end_streams`); pages reconnect. Bounds: at most
`MAX_SUBSCRIBERS` streams per process (503 beyond), a keep-alive comment every
`KEEPALIVE_SECONDS`, and a stream ends when its portal token expires (or after
`MAX_STREAM_SECONDS` for an API key): the page then asks its host for a fresh token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import asyncpg
import structlog

from infra.outages import ASYNCPG_OUTAGE
from projections.projector import PROJECTED_CHANNEL
from projections.store import TRACKING

log = structlog.get_logger("credits.api.changes")

MAX_SUBSCRIBERS = 256
KEEPALIVE_SECONDS = 15.0
FALLBACK_POLL_SECONDS = 2.0
MAX_STREAM_SECONDS = 3600.0
LISTEN_CONNECT_SECONDS = 5.0
# The read models the Plan & Usage page draws: a change is told once all have applied it.
PAGE_PROJECTIONS = ("balances", "usage", "transactions")


class TooManySubscribers(Exception):
    pass


class ChangeFeed:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._listener: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._tick = asyncio.Event()
        self._ending = False
        self.subscribers = 0

    def end_streams(self) -> None:
        """Ends every open stream now (the API is stopping: they would hold its graceful stop
        for its whole timeout). Pages reconnect to another instance."""
        self._ending = True
        self._wake()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(*ASYNCPG_OUTAGE):
                await listener.close(timeout=2)
            listener.terminate()

    def _wake(self, *_: object) -> None:
        # Every waiting subscriber looks once; the next waits on a fresh event.
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _listening(self) -> bool:
        if self._listener is not None and not self._listener.is_closed():
            return True
        async with self._lock:
            if self._listener is not None and not self._listener.is_closed():
                return True
            try:
                conn = await asyncpg.connect(self._dsn, timeout=LISTEN_CONNECT_SECONDS)
            except ASYNCPG_OUTAGE as error:
                log.warning("change feed cannot listen: polling", error=type(error).__name__)
                return False
            try:
                await conn.add_listener(PROJECTED_CHANNEL, self._wake)
            except BaseException:
                conn.terminate()
                raise
            conn.add_termination_listener(self._wake)
            self._listener = conn
            return True

    async def stream(
        self, pool: asyncpg.Pool, account_id: str, until: float, since_position: int
    ) -> AsyncIterator[bytes]:
        """SSE frames for one account until the monotonic time `until`: `changed` with the
        position the read models reached, keep-alive comments between."""
        if self.subscribers >= MAX_SUBSCRIBERS:
            raise TooManySubscribers(f"{MAX_SUBSCRIBERS} change streams are open")
        self.subscribers += 1
        try:
            last = since_position
            last_sent = time.monotonic()
            yield b"retry: 2000\n\n"
            while (left := until - time.monotonic()) > 0 and not self._ending:
                listening = await self._listening()
                wait = min(left, KEEPALIVE_SECONDS if listening else FALLBACK_POLL_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._tick.wait(), timeout=wait)
                position = await _settled_position(pool, account_id)
                if position is not None and position > last:
                    last = position
                    last_sent = time.monotonic()
                    data = json.dumps({"account_id": account_id, "position": position})
                    yield f"event: changed\ndata: {data}\n\n".encode()
                elif time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
                    last_sent = time.monotonic()
                    yield b": keep-alive\n\n"
            if not self._ending:
                yield b"event: expired\ndata: {}\n\n"
        finally:
            self.subscribers -= 1


async def _settled_position(pool: asyncpg.Pool, account_id: str) -> int | None:
    """The account's last event's position, once every page read model has applied it."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT a.position, "
            f"(SELECT min(position) FROM {TRACKING} WHERE projection = ANY($2::text[])) AS reached "
            "FROM rm_accounts a WHERE a.account_id = $1",
            account_id,
            list(PAGE_PROJECTIONS),
        )
    if row is None or row["reached"] is None or row["reached"] < row["position"]:
        return None
    position: int = row["position"]
    return position
