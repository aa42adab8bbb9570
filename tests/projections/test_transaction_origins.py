"""A transactions table made before rows named their origin: the projector adds the columns
(null, origin unknown, in the rows already there), new rows name their origin, and a rebuild
fills every row; the rebuilt model then equals the fold, origins included."""

from __future__ import annotations

import pytest

from projections.rebuild import rebuild
from projections.store import ensure_tables
from projections.transactions import ORIGIN_COLUMNS
from services.api.models import TransactionRow
from tests.kit.ledger import Ledger
from tests.projections.raw_side import Side, assert_equal_to_the_fold, project, store

pytestmark = pytest.mark.integration

COLUMNS = [column for _, column, _ in ORIGIN_COLUMNS]


async def test_origins_added_to_an_older_table_are_null_until_a_rebuild_fills_them(
    side: Side,
) -> None:
    ledger = Ledger("demo.toml")
    account = ledger.new_account_id("origins")
    ledger.ok("open_account", account, plan="starter")
    ledger.ok(
        "purchase",
        account,
        pack="credits_1000",
        payment_reference="pi_1",
        amount_paid=4000,
        currency="usd",
    )
    await store(side, ledger.new_events(account))
    side.accounts.append(account)
    await project(side)
    pool = side.read_side.pool
    async with pool.acquire() as conn:
        # The table as it was made before origins: without their columns.
        for column in COLUMNS:
            await conn.execute(f"ALTER TABLE rm_transactions DROP COLUMN {column}")
        await ensure_tables(conn, side.read_side.projections.values())
        old = await conn.fetch("SELECT * FROM rm_transactions ORDER BY version, credit_type")
    assert old and all(row[c] is None for row in old for c in COLUMNS), "unknown, not made up"
    assert all(TransactionRow(**_shown(row)).origin is None for row in old)

    ledger.ok("grant", account, credit_type="credits", amount=5, source="admin", reference="SUP-7")
    await store(side, ledger.new_events(account))
    await project(side)
    async with pool.acquire() as conn:
        (granted,) = await conn.fetch(
            "SELECT * FROM rm_transactions WHERE kind = 'grant' AND account_id = $1", account
        )
    origin = TransactionRow(**_shown(granted)).origin
    assert origin is not None and (origin.source, origin.reason) == ("admin", "SUP-7")

    result = await rebuild(pool, side.read_side.log, side.read_side.projections["transactions"])
    assert result.swapped and not result.matches, "the rebuilt rows name origins the old did not"
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM rm_transactions ORDER BY version, credit_type")
    shown = [TransactionRow(**_shown(row)) for row in rows]
    assert all(row.origin is not None for row in shown)
    purchase = next(row for row in shown if row.kind == "purchase")
    assert purchase.origin is not None
    assert (purchase.origin.pack, purchase.origin.payment_reference) == ("credits_1000", "pi_1")
    await assert_equal_to_the_fold(side)


def _shown(row: object) -> dict[str, object]:
    return {k: v for k, v in dict(row).items() if k != "account_id"}  # type: ignore[call-overload]
