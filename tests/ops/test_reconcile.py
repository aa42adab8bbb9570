"""`credits reconcile` on the real PostgreSQL: read models that agree with the events exit 0; one
corrupted row exits 1 naming the account and the read model; an account whose newest events
are not projected yet is counted, not reported; and `credits --version`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from typing import Any

import pytest

from domain.catalog import load_catalog
from infra.settings import Settings
from projections.read_side import ReadSide, open_read_side
from projections.reconcile import compare_account
from services.cli.main import main
from tests.databases import fresh_database
from tests.kit.ledger import Ledger, ledger_on_postgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_database(base_settings: Settings) -> Iterator[Settings]:
    """A database of this module's own: reconcile reads every account in it."""
    own = base_settings.model_copy(
        update={"pg_database": f"credits_reconcile_{uuid.uuid4().hex[:10]}"}
    )
    with fresh_database(base_settings, own.pg_database):
        yield own


@pytest.fixture(scope="module")
def ledger(own_database: Settings) -> Iterator[Ledger]:
    ledger = ledger_on_postgres(own_database, load_catalog(own_database.catalog_path))
    yield ledger
    ledger.close()


@pytest.fixture
async def read_side(own_database: Settings) -> AsyncIterator[ReadSide]:
    async with open_read_side(own_database) as side:
        yield side


@pytest.fixture
def reconcile(
    own_database: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    logging_restored: None,
) -> Any:
    monkeypatch.setenv("CREDITS_PG_DATABASE", own_database.pg_database)

    async def run(*words: str) -> tuple[int, str]:
        code = await asyncio.to_thread(main, ["reconcile", *words])
        return code, capsys.readouterr().out

    return run


def _account(ledger: Ledger) -> str:
    account = ledger.new_account_id("rec")
    ledger.ok("open_account", account, plan="pro")
    ledger.ok("consume", account, action="lookup", quantity=3)
    ledger.ok("reserve", account, hold_id="h1", action="generate", ttl_seconds=600)
    ledger.ok("grant", account, credit_type="credits", amount=40, source="admin")
    return account


async def test_read_models_that_agree_exit_0_and_a_corrupted_row_exits_1_naming_it(
    ledger: Ledger, read_side: ReadSide, reconcile: Any
) -> None:
    accounts = [_account(ledger) for _ in range(3)]
    await read_side.projector().catch_up()

    code, out = await reconcile()
    assert (code, "3 account(s) compared, 0 mismatch(es)" in out) == (0, True)
    code, out = await reconcile("--sample", "2")
    assert (code, "2 account(s) compared, 0 mismatch(es)" in out) == (0, True)

    corrupted = accounts[1]
    async with read_side.pool.acquire() as conn:
        await conn.execute(
            "UPDATE rm_balances SET available = available + 1 "
            "WHERE account_id = $1 AND credit_type = 'credits'",
            corrupted,
        )
    code, out = await reconcile()
    mismatches = [line for line in out.splitlines() if line.startswith("MISMATCH")]
    assert code == 1
    assert mismatches and all(corrupted in line for line in mismatches)
    assert any(f"MISMATCH {corrupted}: rm_balances[credits]" in line for line in mismatches)
    # The analytics model was not touched, so the outstanding sums still agree.
    assert not any("rm_analytics_outstanding" in line for line in mismatches)

    async with read_side.pool.acquire() as conn:
        await conn.execute(
            "UPDATE rm_balances SET available = available - 1 "
            "WHERE account_id = $1 AND credit_type = 'credits'",
            corrupted,
        )
    assert (await reconcile())[0] == 0


async def test_an_account_not_yet_projected_is_not_a_mismatch(
    ledger: Ledger, read_side: ReadSide, reconcile: Any
) -> None:
    await read_side.projector().catch_up()
    moving = _account(ledger)  # the projector does not run: its rows are missing or behind

    code, out = await reconcile()

    assert code == 0, out
    assert moving not in out
    assert "1 account(s) not compared: events not yet projected" in out
    assert "credits outstanding (rm_analytics_outstanding) not compared" in out


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"credits {version('credits-ledger')}"


# Each read model, corrupted by one row, and what reconcile must name.
CORRUPTIONS = [
    ("UPDATE rm_accounts SET version = version + 1", "rm_accounts (version, plan)"),
    ("UPDATE rm_lots SET remaining = remaining + 1", "rm_lots"),
    ("UPDATE rm_holds SET amount = amount + 1", "rm_holds"),
    (
        "UPDATE rm_transaction_heads SET available = available + 1",
        "rm_transaction_heads[credits].available",
    ),
    ("UPDATE rm_usage_daily SET count = count + 1", "rm_usage_daily (count, cost)"),
    ("UPDATE rm_usage_daily SET credits = credits + 1", "rm_usage_daily Σ credits"),
    ("DELETE FROM rm_balances", "rm_balances[credits]"),
]


@pytest.mark.parametrize(("corruption", "read_model"), CORRUPTIONS, ids=[c[1] for c in CORRUPTIONS])
async def test_every_read_model_is_compared(
    ledger: Ledger, read_side: ReadSide, corruption: str, read_model: str
) -> None:
    account = _account(ledger)
    await read_side.projector().catch_up()
    names = list(read_side.projections)
    async with read_side.pool.acquire() as conn:
        agreed = await compare_account(
            conn, read_side.log, ledger.app, read_side.catalog, names, account
        )
        await conn.execute(f"{corruption} WHERE account_id = $1", account)
        compared = await compare_account(
            conn, read_side.log, ledger.app, read_side.catalog, names, account
        )

    assert agreed is not None and agreed.mismatches == []
    assert compared is not None
    assert read_model in {m.read_model for m in compared.mismatches}
    assert {m.account_id for m in compared.mismatches} == {account}
