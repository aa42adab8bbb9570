"""`credits run projector`: the read side opened (waiting out a database that is away at start),
then the projector keeping every read model up to date until asked to stop."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from infra.outages import ASYNCPG_OUTAGE, POSTGRES_OUTAGE
from infra.readiness import READINESS
from infra.retry import Stopped, retry, until_stopped
from infra.settings import Settings
from projections.projector import COMPONENT
from projections.read_side import open_read_side


async def run_projector(settings: Settings, stop: asyncio.Event) -> None:
    READINESS.register(COMPONENT)
    async with AsyncExitStack() as opened:
        try:
            # A database that is away at start is waited for, as one lost later is.
            read_side = await retry(
                lambda: until_stopped(
                    opened.enter_async_context(open_read_side(settings)), stop, OPENING
                ),
                doing=OPENING,
                retry_on=(*ASYNCPG_OUTAGE, *POSTGRES_OUTAGE),
                stop=stop,
                on_state=READINESS.reporter(COMPONENT),
            )
        except Stopped:
            READINESS.report(COMPONENT, ready=False, detail="stopped")
            return
        await read_side.projector().run(stop)


OPENING = "opening the read side"
