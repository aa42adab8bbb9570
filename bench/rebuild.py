"""Projection rebuild rate over 1,000,000 events (DESIGN §7; target ≥ 30,000 events/s).

The events are real: a template of accounts is driven through `LedgerService.handle_many`
(opens, consumes, holds, purchases, grants, refunds, days passing, so renewals and expiries),
then the stored events are copied in bulk under new account ids (`<id>:r<n>`, each copy a
whole set of streams) until the log holds 1,000,000. Event states name no account, so a copy
is the event the ledger would have stored for that account. The rebuild of `balances` into
shadow tables is timed (its build phase: the swap is milliseconds and needs a live model
caught up to compare with), and its checksum printed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from bench.database import BENCH_DATABASE
from bench.rows import BenchRow
from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from projections.read_side import open_read_side
from projections.rebuild import ShadowBuilder
from projections.store import SHADOW_SUFFIX, checksum
from services.ledger.service import LedgerService
from tests.kit.clock import SettableClock

TARGET_EVENTS = 1_000_000
TEMPLATE_ACCOUNTS = 200
TEMPLATE_ROUNDS = 30
PLANS = ("free", "starter", "pro")


def _round(n: int, accounts: list[str]) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = []
    for i, account in enumerate(accounts):
        key = f"{n}-{i}"
        match (n + i) % 6:
            case 0 | 1:
                fields: dict[str, Any] = {"type": "consume", "action": "lookup", "quantity": 2}
            case 2:
                fields = {"type": "consume", "action": "send_message"}
            case 3:
                fields = {
                    "type": "reserve",
                    "hold_id": f"h{key}",
                    "action": "generate",
                    "ttl_seconds": 600,
                }
            case 4:
                fields = {
                    "type": "purchase",
                    "pack": "messages_100",
                    "payment_reference": f"pi{key}",
                    "amount_paid": 300,
                    "currency": "usd",
                }
            case _:
                fields = {
                    "type": "grant",
                    "credit_type": "credits",
                    "amount": 50,
                    "source": "promotional",
                }
        commands.append({**fields, "command_id": f"b{key}", "account_id": account})
        if (n + i) % 6 == 3:
            commands.append(
                {
                    "type": "capture",
                    "hold_id": f"h{key}",
                    "amount": 1,
                    "command_id": f"cap{key}",
                    "account_id": account,
                }
            )
    return commands


def _template(settings: Settings) -> int:
    """Drive the template accounts through the real ledger; the number of events stored."""
    clock = SettableClock(datetime(2024, 1, 1, 9, 0, tzinfo=UTC))
    app = LedgerApplication(env=event_store_env(settings))
    try:
        service = LedgerService(app, load_catalog(settings.catalog_path), clock)
        accounts = [f"bench-{i}" for i in range(TEMPLATE_ACCOUNTS)]
        service.handle_many(
            [
                {
                    "type": "open_account",
                    "command_id": f"o{i}",
                    "account_id": a,
                    "plan": PLANS[i % 3],
                }
                for i, a in enumerate(accounts)
            ]
        )
        for n in range(TEMPLATE_ROUNDS):
            clock.advance(hours=9)  # day boundaries: renewals, hold expiry
            service.handle_many(_round(n, accounts))
        return int(app.recorder.max_notification_id() or 0)
    finally:
        app.close()


async def _copy_until(conn: Any, table: str, template_events: int, target: int) -> int:
    copies = -(-target // template_events) - 1  # the template is copy 0
    await conn.execute(
        f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
        f"SELECT e.originator_id || ':r' || k, e.originator_version, e.topic, e.state "
        f"FROM generate_series(1, $1) k CROSS JOIN "
        f"(SELECT * FROM {table} WHERE notification_id <= $2) e "
        f"ORDER BY k, e.notification_id",
        copies,
        template_events,
    )
    await conn.execute(f"DELETE FROM {table} WHERE notification_id > $1", target)
    # A live store has been read and vacuumed; a freshly copied one would first set hint bits.
    await conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def run(settings: Settings) -> list[BenchRow]:
    started = time.perf_counter()
    template_events = await asyncio.to_thread(_template, settings)
    template_seconds = time.perf_counter() - started
    async with open_read_side(settings) as read_side:
        async with read_side.pool.acquire() as conn:
            events = await _copy_until(conn, read_side.log.table, template_events, TARGET_EVENTS)
        balances = read_side.projections["balances"]
        builder = ShadowBuilder(read_side.log, balances)
        async with read_side.pool.acquire() as reader, read_side.pool.acquire() as writer:
            await builder.reset(writer)
            started = time.perf_counter()
            await builder.build(reader, writer, events, lambda _: None)
            seconds = time.perf_counter() - started
            digest = await checksum(writer, balances, SHADOW_SUFFIX)
            accounts = await writer.fetchval(f"SELECT count(*) FROM rm_accounts{SHADOW_SUFFIX}")
    assert builder.events == events, (builder.events, events)
    note = (
        f"{events:,} events, {accounts:,} accounts ({template_events:,} real events from "
        f"{TEMPLATE_ACCOUNTS} accounts in {template_seconds:.0f} s, copied); "
        f"{seconds:.1f} s; checksum {digest[:12]}"
    )
    return [
        BenchRow("projection rebuild (balances)", events / seconds, "events/s", note, "≥ 70,000")
    ]


if __name__ == "__main__":
    # Alone, on the same database as `python -m bench` (CREDITS_BENCH_DATABASE), which it
    # expects empty: `python -m bench --only rebuild` drops and makes it first.
    for row in asyncio.run(run(Settings().model_copy(update={"pg_database": BENCH_DATABASE}))):
        print(row)
