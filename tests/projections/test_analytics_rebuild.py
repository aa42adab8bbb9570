"""Acceptance: `credits projections rebuild analytics` on a store with purchases, holds,
refunds, expiries and plan changes ends with the same checksum the live read model had before
(every analytics table, the new daily, breakage, refill and paid-lot ones included)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from infra.settings import Settings
from projections.read_side import ReadSide
from projections.store import checksum
from services.cli.main import main
from tests.kit.ledger import Ledger

pytestmark = pytest.mark.integration


def history(ledger: Ledger, accounts: list[str]) -> None:
    for n, account in enumerate(accounts):
        ledger.ok("open_account", account, plan=("free", "starter", "pro")[n % 3])
        for p in range(2):
            ledger.ok(
                "purchase",
                account,
                pack="messages_100",
                payment_reference=f"{account}-pi-{p}",
                amount_paid=300,
                currency="usd",
            )
        ledger.ok("consume", account, action="send_message", quantity=25 + n)
        ledger.ok("reserve", account, hold_id="h1", action="send_message", ttl_seconds=60)
        expires_at = ledger.clock.now() + timedelta(minutes=30)
        ledger.ok(
            "grant",
            account,
            credit_type="storage",
            amount=5 + n,
            source="promotional",
            expires_at=expires_at.isoformat(),
        )
        ledger.ok("revoke", account, payment_reference=f"{account}-pi-1", reason="refund")
    ledger.clock.advance(hours=2)
    for n, account in enumerate(accounts):
        ledger.ok("expire", account)
        ledger.ok("change_plan", account, plan=("starter", "pro", "free")[n % 3])


async def test_rebuilding_analytics_keeps_its_checksum(
    read_side: ReadSide,
    pg_ledger: Ledger,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    logging_restored: None,
) -> None:
    accounts = [pg_ledger.new_account_id("analytics") for _ in range(6)]
    await asyncio.to_thread(history, pg_ledger, accounts)
    await read_side.projector().catch_up()
    analytics = read_side.projections["analytics"]
    async with read_side.pool.acquire() as conn:
        before = await checksum(conn, analytics)
        breakage = await conn.fetchval("SELECT count(*) FROM rm_analytics_breakage")
        daily = await conn.fetchval("SELECT count(*) FROM rm_analytics_revenue_daily")
    assert breakage > 0 and daily > 0
    monkeypatch.setenv("CREDITS_PG_DATABASE", settings.pg_database)

    code = await asyncio.to_thread(main, ["projections", "rebuild", "analytics"])

    out = capsys.readouterr().out
    rebuilt = next(line for line in out.splitlines() if line.startswith("rebuilt checksum"))
    assert code == 0
    async with read_side.pool.acquire() as conn:
        after = await checksum(conn, analytics)
    assert rebuilt.split()[-1] == after == before
