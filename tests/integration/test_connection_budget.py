"""`credits run all` at the default settings holds at most 12 PostgreSQL connections, also while
it works: one event-store application and one asyncpg pool for the whole process
(infra/process_event_store.py, infra/process_pool.py), counted in `pg_stat_activity` while
commands and reads go through."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from infra.settings import Settings
from services.api.keys import Scope
from tests.api.conftest import bearer, create_key
from tests.databases import fresh_database
from tests.faults.component_process import ComponentProcess
from tests.kit.ports import free_port

pytestmark = pytest.mark.integration

BUDGET_CONNECTIONS = 12
ACCOUNTS = 20
COMMANDS_PER_ACCOUNT = 6


async def _connections(conn: asyncpg.Connection, database: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
    )
    return count


async def _ready(client: httpx.AsyncClient, ops_url: str, process: ComponentProcess) -> None:
    async with asyncio.timeout(90):
        while True:
            assert process.running(), process.text()[-3000:]
            try:
                if (await client.get(f"{ops_url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def _work(client: httpx.AsyncClient, key: str, account: int) -> list[str]:
    url = f"/v1/accounts/budget-{account}/commands"
    commands: list[dict[str, object]] = [
        {"type": "open_account", "command_id": f"open-{account}", "plan": "pro"}
    ]
    commands += [
        {
            "type": "consume",
            "command_id": f"use-{account}-{i}",
            "credit_type": "credits",
            "amount": 1,
        }
        for i in range(COMMANDS_PER_ACCOUNT - 1)
    ]
    statuses = []
    for command in commands:
        reply = await client.post(url, json=command, headers=bearer(key))
        statuses.append(reply.json().get("status", reply.text))
        await client.get(f"/v1/accounts/budget-{account}", headers=bearer(key))
    return statuses


@pytest.fixture
def own_database(topics: Settings, base_settings: Settings) -> Iterator[Settings]:
    """A database of this test's own: every connection to it is the process's (or the
    watcher's), none of the other tests' pools in the session's database."""
    name = f"{topics.pg_database}_budget"
    with fresh_database(base_settings, name):
        yield topics.model_copy(update={"pg_database": name})


async def test_run_all_holds_at_most_twelve_connections_while_it_works(
    own_database: Settings, tmp_path: Path
) -> None:
    mine = own_database.model_copy(update={"http_port": free_port(), "ops_port": free_port()})
    admin_key = await create_key(mine, Scope.admin)
    process = ComponentProcess("all", mine, tmp_path)
    counts: list[int] = []
    sampling = asyncio.Event()
    try:
        watcher = await asyncpg.connect(mine.pg_dsn())

        async def sample() -> None:
            while not sampling.is_set():
                # The watcher's own connection is not the service's.
                counts.append(await _connections(watcher, mine.pg_database) - 1)
                await asyncio.sleep(0.05)

        base_url = f"http://127.0.0.1:{mine.http_port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            await _ready(client, f"http://127.0.0.1:{mine.ops_port}", process)
            sampler = asyncio.create_task(sample())
            statuses = await asyncio.gather(
                *(_work(client, admin_key, account) for account in range(ACCOUNTS))
            )
            sampling.set()
            await sampler
        await watcher.close()
    finally:
        process.terminate(timeout_seconds=15)
        process.kill()

    flat = [status for run in statuses for status in run]
    assert flat.count("accepted") == ACCOUNTS * COMMANDS_PER_ACCOUNT, flat
    assert counts and max(counts) <= BUDGET_CONNECTIONS, (max(counts), counts[-20:])
    assert min(counts) >= 3, "the sampler saw the service's connections"
