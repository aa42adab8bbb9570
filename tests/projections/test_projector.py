"""The projector: exactly once with concurrent projectors, woken by NOTIFY, lag and errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from domain.account import Account
from infra.metrics import PROJECTION_LAG, PROJECTION_SKIPPED_EVENTS
from projections import ops, queries
from projections.batch import BatchState
from projections.folds import expected_balances, projected_balances
from projections.projector import Projector, ProjectorConfig
from projections.read_side import ReadSide
from projections.store import checksum, ensure_tables
from tests.kit.ledger import Ledger

pytestmark = pytest.mark.integration


def populate(ledger: Ledger, accounts: int, consumes: int) -> list[str]:
    ids = [ledger.new_account_id("proj") for _ in range(accounts)]
    ledger.service.handle_many([ledger.command("open_account", a, plan="pro") for a in ids])
    commands = [
        ledger.command("consume", ids[i % accounts], action="lookup", quantity=1 + i % 3)
        for i in range(consumes)
    ]
    for start in range(0, len(commands), 1000):  # handle_many takes at most 1000
        ledger.service.handle_many(commands[start : start + 1000])
    return ids


async def test_two_projectors_at_once_apply_each_event_exactly_once(
    read_side: ReadSide, pg_ledger: Ledger
) -> None:
    ids = populate(pg_ledger, accounts=20, consumes=600)
    config = ProjectorConfig(batch_events=50)
    first = Projector(read_side.pool, read_side.log, read_side.projections, config)
    second = Projector(read_side.pool, read_side.log, read_side.projections, config)

    await asyncio.gather(first.catch_up(), second.catch_up())

    async with read_side.pool.acquire() as conn:
        for account_id in ids:
            rows = await queries.balances(conn, account_id)
            assert projected_balances(rows, pg_ledger.catalog) == expected_balances(
                pg_ledger.account(account_id), pg_ledger.catalog
            )
        usage = await conn.fetchval(
            "SELECT sum(count) FROM rm_usage_daily WHERE account_id = ANY($1::text[])", ids
        )
    assert usage == sum(1 + i % 3 for i in range(600))
    _, status = await ops.status(read_side)
    assert {
        r.projection: r.lag_events for r in status if r.projection in read_side.projections
    } == (dict.fromkeys(read_side.projections, 0))
    assert PROJECTION_LAG.labels("balances")._value.get() == 0


async def test_a_running_projector_wakes_on_notify_not_on_its_poll(
    read_side: ReadSide, pg_ledger: Ledger
) -> None:
    await read_side.projector().catch_up()
    # A poll every 30 s: only the NOTIFY can make it see the event within the bound below.
    config = ProjectorConfig(poll_seconds=30.0)
    projector = Projector(
        read_side.pool,
        read_side.log,
        read_side.projections,
        config,
        listen_dsn=read_side.settings.pg_dsn(),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(projector.run(stop))
    try:
        await asyncio.sleep(0.3)  # listening
        account_id = pg_ledger.new_account_id("notify")
        reply = await asyncio.to_thread(pg_ledger.ok, "open_account", account_id, plan="free")
        assert reply.position is not None
        started = time.perf_counter()
        reached = await queries.wait_for_position(
            read_side.pool, list(read_side.projections), reply.position, timeout_seconds=5
        )
        waited_seconds = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)
    assert reached
    assert waited_seconds < 2.0


class _Failing:
    """A projection that cannot apply the Opened event of accounts named `poison...`, and
    fails on those named `flaky...` the way a serialization conflict would (retrying helps)."""

    name = "failing_test_projection"
    tables: tuple[Any, ...] = ()

    def __init__(self) -> None:
        # The accounts whose Opened event it applied.
        self.applied: list[str] = []

    def finish(self, state: BatchState) -> None:
        pass

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        if isinstance(event, Account.Opened) and event.originator_id.startswith("poison"):
            raise ValueError("cannot project this account")
        if isinstance(event, Account.Opened) and event.originator_id.startswith("flaky"):
            raise asyncpg.exceptions.SerializationError("could not serialize access")
        if isinstance(event, Account.Opened):
            self.applied.append(event.originator_id)


async def _alongside_balances(read_side: ReadSide, failing: _Failing) -> Projector:
    projections: dict[str, Any] = {"balances": read_side.projections["balances"]}
    projections[failing.name] = failing
    async with read_side.pool.acquire() as conn:
        await ensure_tables(conn, [failing])
        await conn.execute(
            "UPDATE rm_tracking SET position = (SELECT position FROM rm_tracking "
            "WHERE projection = 'balances') WHERE projection = $1",
            failing.name,
        )
    return Projector(read_side.pool, read_side.log, projections)


async def _forget(read_side: ReadSide, name: str) -> None:
    async with read_side.pool.acquire() as conn:
        await conn.execute("DELETE FROM rm_tracking WHERE projection = $1", name)
        await conn.execute("DELETE FROM rm_skipped_events WHERE projection = $1", name)


async def test_an_event_a_projection_cannot_apply_is_skipped_and_recorded_not_retried(
    read_side: ReadSide, pg_ledger: Ledger
) -> None:
    await read_side.projector().catch_up()
    failing = _Failing()
    projector = await _alongside_balances(read_side, failing)
    before = pg_ledger.ok("open_account", pg_ledger.new_account_id("good"), plan="free")
    poison_id = pg_ledger.new_account_id("poison")
    poison = pg_ledger.ok("open_account", poison_id, plan="free")
    after_id = pg_ledger.new_account_id("good")
    after = pg_ledger.ok("open_account", after_id, plan="free")
    skipped_before = PROJECTION_SKIPPED_EVENTS.labels(failing.name)._value.get()
    try:
        most, failures = await projector.step()
        assert (most > 0, failures) == (True, 0)
        _, rows = await ops.status(read_side)
        by_name = {r.projection: r for r in rows}
        # Past the poison event, with the events around it applied and no error left.
        assert by_name[failing.name].position >= (after.position or 0)
        assert by_name[failing.name].last_error is None
        assert by_name[failing.name].skipped_events == 1
        assert after_id in failing.applied
        assert poison_id not in failing.applied
        async with read_side.pool.acquire() as conn:
            skipped = await conn.fetch(
                "SELECT * FROM rm_skipped_events WHERE projection = $1", failing.name
            )
        assert [(r["originator_id"], r["originator_version"]) for r in skipped] == [(poison_id, 1)]
        assert (before.position or 0) < skipped[0]["position"] <= (poison.position or 0)
        assert "ValueError: cannot project this account" in skipped[0]["error"]
        assert skipped[0]["topic"].endswith("Account.Opened")
        assert PROJECTION_SKIPPED_EVENTS.labels(failing.name)._value.get() == skipped_before + 1
    finally:
        await _forget(read_side, failing.name)


async def test_a_failure_retrying_can_fix_is_recorded_and_retried_not_skipped(
    read_side: ReadSide, pg_ledger: Ledger
) -> None:
    await read_side.projector().catch_up()
    failing = _Failing()
    projector = await _alongside_balances(read_side, failing)
    reply = pg_ledger.ok("open_account", pg_ledger.new_account_id("flaky"), plan="free")
    try:
        most, failures = await projector.step()
        assert (most > 0, failures) == (True, 1)
        _, rows = await ops.status(read_side)
        by_name = {r.projection: r for r in rows}
        assert by_name["balances"].position >= (reply.position or 0)
        assert "could not serialize access" in (by_name[failing.name].last_error or "")
        assert by_name[failing.name].position < (reply.position or 0)
        assert by_name[failing.name].skipped_events == 0
    finally:
        await _forget(read_side, failing.name)


async def test_a_restarted_projector_resumes_from_its_position(
    read_side: ReadSide, pg_ledger: Ledger
) -> None:
    await read_side.projector().catch_up()
    before = {}
    async with read_side.pool.acquire() as conn:
        for name, projection in read_side.projections.items():
            before[name] = await checksum(conn, projection)
    # A new projector (a restart) with nothing new to apply changes nothing.
    await read_side.projector().catch_up()
    async with read_side.pool.acquire() as conn:
        for name, projection in read_side.projections.items():
            assert await checksum(conn, projection) == before[name], name
