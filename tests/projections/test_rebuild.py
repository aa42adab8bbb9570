"""Acceptance: `projections rebuild balances` on a populated store ends with the live checksum,
while reads keep answering and new events keep arriving; and the CLI command prints both."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from infra.settings import Settings
from projections import queries
from projections.folds import expected_balances, projected_balances
from projections.read_side import ReadSide
from projections.rebuild import rebuild
from services.api.app import create_app
from services.api.keys import Scope
from services.cli.main import main
from tests.api.conftest import bearer, create_key
from tests.kit.ledger import Ledger
from tests.projections.test_projector import populate

pytestmark = pytest.mark.integration


async def test_rebuild_matches_the_live_read_model_while_reads_keep_answering(
    read_side: ReadSide, pg_ledger: Ledger, settings: Settings
) -> None:
    ids = populate(pg_ledger, accounts=30, consumes=1500)
    projector = read_side.projector()
    await projector.catch_up()
    balances = read_side.projections["balances"]
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    answers: list[int] = []
    rebuilding = asyncio.Event()

    async def read_all_along(client: httpx.AsyncClient) -> None:
        for i in range(10_000):  # bounded; stops when the rebuild is done
            response = await client.get(f"/v1/accounts/{ids[i % len(ids)]}")
            answers.append(response.status_code)
            if not rebuilding.is_set():
                return

    async def write_all_along() -> None:
        for i in range(20):
            if not rebuilding.is_set():
                return
            command = pg_ledger.command("consume", ids[i], action="lookup")
            await asyncio.to_thread(pg_ledger.service.handle, command)
            await projector.catch_up()

    headers = bearer(await create_key(settings, Scope.read))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as client:
        rebuilding.set()
        readers = [asyncio.create_task(read_all_along(client)) for _ in range(3)]
        writer = asyncio.create_task(write_all_along())
        # Small batches: many commits, so the readers and the writer interleave with them.
        result = await rebuild(read_side.pool, read_side.log, balances, batch_events=200)
        rebuilding.clear()
        await asyncio.gather(*readers, writer)
        after = await client.get(f"/v1/accounts/{ids[0]}")
    await app.state.resources.close()

    assert result.swapped and result.matches, result
    assert result.events >= 1500
    assert len(answers) > 10 and set(answers) == {200}, answers[:20]
    assert after.status_code == 200
    # The events written during the rebuild are in the swapped-in tables too.
    await projector.catch_up()
    async with read_side.pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('rm_balances__shadow')") is None
        for account_id in ids:
            rows = await queries.balances(conn, account_id)
            assert projected_balances(rows, pg_ledger.catalog) == expected_balances(
                pg_ledger.account(account_id), pg_ledger.catalog
            )


async def test_the_rebuild_command_prints_matching_checksums(
    read_side: ReadSide,
    pg_ledger: Ledger,
    settings: Settings,
    capsys,
    monkeypatch,
    logging_restored: None,
) -> None:
    populate(pg_ledger, accounts=5, consumes=50)
    await read_side.projector().catch_up()
    monkeypatch.setenv("CREDITS_PG_DATABASE", settings.pg_database)

    code = await asyncio.to_thread(main, ["projections", "rebuild", "balances"])

    out = capsys.readouterr().out
    rebuilt = next(line for line in out.splitlines() if line.startswith("rebuilt checksum"))
    live = next(line for line in out.splitlines() if line.startswith("live checksum"))
    assert code == 0
    assert rebuilt.split()[-1] == live.split()[-1]
    assert "events/s" in out
