"""The account at a past instant, read from PostgreSQL (`account_at`, `credits account show
--as-of`): equal to the fold of its events cut at that instant, with snapshots every 3 events
(so most instants have snapshots after them, which must not be used)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import cast

import pytest
from eventsourcing.application import project_aggregate

from domain.account import Account
from domain.catalog import Catalog
from domain.snapshots import encode
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from projections.account_at import account_at, describe
from projections.read_side import ReadSide
from services.cli.main import main
from tests.kit.clock import START, SettableClock
from tests.kit.ledger import Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def snapshotting_ledger(
    settings: Settings, pg_database: str, demo_catalog: Catalog
) -> Iterator[Ledger]:
    app = LedgerApplication(env={**event_store_env(settings), "LEDGER_SNAPSHOT_INTERVAL": "3"})
    ledger = Ledger(demo_catalog, SettableClock(START), app=app)
    yield ledger
    ledger.close()


def history(ledger: Ledger, account: str) -> None:
    ledger.ok("open_account", account, plan="starter")
    ledger.clock.advance(minutes=10)
    expires_at = ledger.clock.now() + timedelta(hours=2)
    ledger.ok(
        "grant",
        account,
        credit_type="credits",
        amount=70,
        source="promotional",
        expires_at=expires_at.isoformat(),
    )
    for n in range(8):
        ledger.clock.advance(minutes=45)
        ledger.ok("consume", account, action="generate", quantity=1 + n % 3)
        if n == 1:
            ledger.ok("reserve", account, hold_id="h1", action="generate", ttl_seconds=3000)
    ledger.clock.advance(days=40)
    ledger.ok("expire", account)
    ledger.ok("consume", account, action="lookup", quantity=2)


async def test_every_instant_of_a_snapshotted_stream_reads_as_the_fold_cut_there(
    read_side: ReadSide, snapshotting_ledger: Ledger
) -> None:
    ledger = snapshotting_ledger
    account = ledger.new_account_id("asof")
    await asyncio.to_thread(history, ledger, account)
    events = [cast(Account.Event, e) for e in ledger.app.events.get(account)]
    assert ledger.app.snapshots is not None
    assert len(ledger.app.snapshots.recorder.select_events(account)) >= 5
    tick = timedelta(microseconds=1)
    instants = sorted({e.timestamp + d for e in events for d in (-tick, timedelta(0), tick)})
    async with read_side.pool.acquire() as conn:
        for at in instants:
            fold = await account_at(conn, read_side.log.mapper, account, at)
            cut = [e for e in events if e.timestamp <= at]
            if not cut:
                assert fold is None, at
                continue
            expected = project_aggregate(None, cut)
            assert isinstance(expected, Account)
            assert fold is not None and fold.account is not None, at
            assert encode(vars(fold.account)) == encode(vars(expected)), at
            position = await conn.fetchval(
                f"SELECT notification_id FROM {read_side.log.table} "
                "WHERE originator_id = $1 AND originator_version = $2",
                account,
                expected.version,
            )
            assert fold.position == position
            reserved = {h.hold_id for h in expected.holds.values()}
            assert set(fold.reserved_at) >= reserved


async def test_account_show_as_of_prints_the_account_then(
    read_side: ReadSide,
    snapshotting_ledger: Ledger,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    logging_restored: None,
) -> None:
    ledger = snapshotting_ledger
    account = ledger.new_account_id("asof-cli")
    await asyncio.to_thread(history, ledger, account)
    events = [cast(Account.Event, e) for e in ledger.app.events.get(account)]
    # Between the third consume and the expiry: the hold open, the promotional lot past its
    # expiry but not yet expired by the ledger.
    at = events[0].timestamp + timedelta(hours=2, minutes=20)
    expected = project_aggregate(None, [e for e in events if e.timestamp <= at])
    assert isinstance(expected, Account)
    monkeypatch.setenv("CREDITS_PG_DATABASE", settings.pg_database)

    code = await asyncio.to_thread(
        main, ["account", "show", account, "--as-of", at.isoformat().replace("+00:00", "Z")]
    )

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["version"] == expected.version
    want = describe(expected, ledger.catalog, at, 0, {"h1": at})
    assert report["balances"] == json.loads(json.dumps(want["balances"], default=str))
    assert [h["hold_id"] for h in report["holds"]] == ["h1"]
    promotional = next(lot for lot in report["lots"] if lot["source"] == "promotional")
    assert promotional["past_expiry"] is True and promotional["closed"] is False
    assert [e["version"] for e in report["stream"]][-1] == expected.version

    before = (events[0].timestamp - timedelta(microseconds=1)).isoformat()
    assert await asyncio.to_thread(main, ["account", "show", account, "--as-of", before]) == 1
    assert "unknown_account" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["account", "show", account, "--as-of", "2024-01"]) == 2
    assert "invalid_request" in capsys.readouterr().err
    future = "2999-01-01T00:00:00Z"
    assert await asyncio.to_thread(main, ["account", "show", account, "--as-of", future]) == 2
    assert "as_of_in_future" in capsys.readouterr().err
