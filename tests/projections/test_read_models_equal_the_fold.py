"""Acceptance: after random command sequences through the real ledger on PostgreSQL, then the
projector, every read model equals what the events give.

- balances, lots, holds = the aggregate reloaded from the store (its fold of the events);
- transaction heads and the last `available_after` = the aggregate's available;
- usage per (day, action, credit type) = a fold of the Consumed/Reserved events, and Σ credits
  = Σ consumed + captured;
- credits outstanding (analytics) = Σ available and Σ held over every account.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.catalog import Catalog
from projections import queries
from projections.read_side import ReadSide
from tests.projections.conftest import PgLedger
from tests.projections.folds import (
    expected_balances,
    expected_holds,
    expected_lots,
    projected_balances,
    projected_holds,
    projected_lots,
    spent_fold,
    usage_fold,
)

pytestmark = pytest.mark.integration

STEPS = (
    "consume",
    "consume_amount",
    "reserve",
    "capture",
    "capture_part",
    "extend_hold",
    "release",
    "grant",
    "purchase",
    "revoke",
    "change_plan",
    "top_up",
    "advance_hours",
    "advance_days",
)
ACTIONS = ("generate", "lookup", "cached_lookup", "send_message", "upload")
CREDIT_TYPES = ("credits", "messages", "storage")
PLANS = ("free", "starter", "pro")

steps = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 1000)), min_size=4, max_size=30)


def drive(ledger: PgLedger, accounts: list[str], script: list[tuple[str, int]]) -> None:
    holds: list[tuple[str, str]] = []
    payments: list[tuple[str, str]] = []
    for index, (step, n) in enumerate(script):
        account = accounts[n % len(accounts)]
        if step == "advance_hours":
            ledger.clock.advance(hours=1 + n % 30)
            continue
        if step == "advance_days":
            ledger.clock.advance(days=1 + n % 40)
            continue
        fields = _fields(step, n, index, account, holds, payments)
        if fields is None:
            continue
        type = fields.pop("type")
        reply = ledger.send(type, account, **fields)
        if reply.status == "accepted" and type == "reserve":
            holds.append((account, fields["hold_id"]))
        if reply.status == "accepted" and type == "purchase":
            payments.append((account, fields["payment_reference"]))


def _fields(
    step: str,
    n: int,
    index: int,
    account: str,
    holds: list[tuple[str, str]],
    payments: list[tuple[str, str]],
) -> dict[str, Any] | None:
    mine = [h for a, h in holds if a == account]
    paid = [p for a, p in payments if a == account]
    match step:
        case "consume":
            return {"type": "consume", "action": ACTIONS[n % 5], "quantity": 1 + n % 7}
        case "consume_amount":
            ct = CREDIT_TYPES[n % 3]
            return {"type": "consume", "credit_type": ct, "amount": 1 + n % 60}
        case "reserve":
            hold = f"h{index}"
            return {
                "type": "reserve",
                "hold_id": hold,
                "action": ACTIONS[n % 5],
                "quantity": 1 + n % 4,
                "ttl_seconds": 60 + n * 3,
            }
        case "capture" if mine:
            hold = mine[n % len(mine)]
            return {"type": "capture", "hold_id": hold, **({"amount": n % 3} if n % 2 else {})}
        case "capture_part" if mine:
            hold = mine[n % len(mine)]
            return {"type": "capture", "hold_id": hold, "amount": 1 + n % 3, "final": False}
        case "extend_hold" if mine:
            return {"type": "extend_hold", "hold_id": mine[n % len(mine)], "ttl_seconds": 600}
        case "release" if mine:
            return {"type": "release", "hold_id": mine[n % len(mine)]}
        case "grant":
            return {
                "type": "grant",
                "credit_type": CREDIT_TYPES[n % 3],
                "amount": 1 + n,
                "source": ("promotional", "admin", "trial")[n % 3],
            }
        case "purchase":
            pack, price = ("credits_1000", 4000) if n % 2 else ("messages_100", 300)
            return {
                "type": "purchase",
                "pack": pack,
                "payment_reference": f"pi_{index}",
                "amount_paid": price,
                "currency": "usd",
            }
        case "revoke" if paid:
            amount = {"amount": 1 + n % 900} if n % 3 == 0 else {}
            return {
                "type": "revoke",
                "payment_reference": paid[n % len(paid)],
                "reason": "refund",
                **amount,
            }
        case "change_plan":
            effective = "now" if n % 4 else "next_period"
            return {"type": "change_plan", "plan": PLANS[n % 3], "effective": effective}
        case "top_up":
            return {"type": "request_top_up", "credit_type": "credits", "amount": 100 + n}
    return None


async def check(read_side: ReadSide, ledger: PgLedger, accounts: list[str]) -> None:
    catalog: Catalog = ledger.catalog
    await read_side.projector().catch_up()
    async with read_side.pool.acquire() as conn:
        for account_id in accounts:
            aggregate = ledger.account(account_id)
            events = ledger.events(account_id)
            row = await queries.account(conn, account_id)
            assert row is not None and row["version"] == aggregate.version
            assert row["plan"] == aggregate.plan
            assert projected_balances(await queries.balances(conn, account_id), catalog) == (
                expected_balances(aggregate, catalog)
            )
            assert projected_lots(await queries.lots(conn, account_id)) == expected_lots(aggregate)
            assert projected_holds(await queries.holds(conn, account_id)) == (
                expected_holds(aggregate)
            )
            heads = dict(
                await conn.fetch(
                    "SELECT credit_type, available FROM rm_transaction_heads WHERE account_id = $1",
                    account_id,
                )
            )
            for credit_type in catalog.credit_types:
                assert heads.get(credit_type, 0) == aggregate.available(credit_type)
            usage = await conn.fetch(
                "SELECT day, action, credit_type, count, credits, cost FROM rm_usage_daily "
                "WHERE account_id = $1",
                account_id,
            )
            assert {
                (r["day"].isoformat(), r["action"], r["credit_type"]): (r["count"], r["cost"])
                for r in usage
                if r["count"] or r["cost"]
            } == {k: (c["count"], c["cost"]) for k, c in usage_fold(events).items()}
            assert sum(r["credits"] for r in usage) == spent_fold(events)
        outstanding = {
            r["credit_type"]: (r["available"], r["held"])
            for r in await conn.fetch("SELECT * FROM rm_analytics_outstanding")
        }
        every = [r["account_id"] for r in await conn.fetch("SELECT account_id FROM rm_accounts")]
    totals: dict[str, tuple[int, int]] = {}
    for account_id in every:
        aggregate = ledger.account(account_id)
        for credit_type in catalog.credit_types:
            available, held = totals.get(credit_type, (0, 0))
            totals[credit_type] = (
                available + aggregate.available(credit_type),
                held + aggregate.held(credit_type),
            )
    assert {ct: v for ct, v in outstanding.items() if v != (0, 0)} == {
        ct: v for ct, v in totals.items() if v != (0, 0)
    }


async def test_every_read_model_equals_the_fold_after_random_commands(
    read_side: ReadSide, pg_ledger: PgLedger
) -> None:
    loop = asyncio.get_running_loop()
    examples: list[int] = []

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(plans=st.tuples(st.sampled_from(PLANS), st.sampled_from(PLANS)), script=steps)
    def scenario(plans: tuple[str, str], script: list[tuple[str, int]]) -> None:
        accounts = [pg_ledger.new_account_id("fold") for _ in plans]
        for account_id, plan in zip(accounts, plans, strict=True):
            pg_ledger.ok("open_account", account_id, plan=plan)
        drive(pg_ledger, accounts, script)
        asyncio.run_coroutine_threadsafe(check(read_side, pg_ledger, accounts), loop).result()
        examples.append(len(script))

    started = time.perf_counter()
    await asyncio.to_thread(scenario)
    print(
        f"{len(examples)} examples, {sum(examples)} steps in {time.perf_counter() - started:.1f} s"
    )
    assert len(examples) >= 40
