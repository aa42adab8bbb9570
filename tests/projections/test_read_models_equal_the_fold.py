"""Acceptance: after random command sequences through the real ledger on PostgreSQL, then the
projector, every read model equals what the events give.

- balances, lots, holds = the aggregate reloaded from the store (its fold of the events);
- transaction heads and the last `available_after` = the aggregate's available;
- resource limits = the aggregate's; units per resource on its last day = the aggregate's count;
- every transaction row's origin = what its event names (`projections/folds.py` origins_fold);
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
from projections.ops import account_report
from projections.read_side import ReadSide
from projections.reconcile import compare_account, outstanding_mismatches
from tests.kit.ledger import Ledger

pytestmark = pytest.mark.integration

STEPS = (
    "consume",
    "consume_amount",
    "consume_resource",
    "set_resource_limit",
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
RESOURCES = ("qr-1", "qr-2", "qr-3")

steps = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 1000)), min_size=4, max_size=30)


def drive(ledger: Ledger, accounts: list[str], script: list[tuple[str, int]]) -> None:
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
        case "consume_resource":
            resource = RESOURCES[n % len(RESOURCES)]
            return {"type": "consume", "action": "send_message", "resource": resource}
        case "set_resource_limit":
            limit = None if n % 4 == 0 else n % 25
            resource = RESOURCES[n % len(RESOURCES)]
            return {"type": "set_resource_limit", "resource": resource, "daily_limit": limit}
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
                # What a history row names as the grant's reason (its origin).
                **({"reference": f"ticket-{n}"} if n % 2 else {}),
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


async def check(read_side: ReadSide, ledger: Ledger, accounts: list[str]) -> None:
    """What `credits reconcile` compares (`projections/reconcile.py`), for these accounts and
    the credits outstanding over every account."""
    catalog: Catalog = ledger.catalog
    await read_side.projector().catch_up()
    names = list(read_side.projections)
    async with read_side.pool.acquire() as conn:
        for account_id in accounts:
            compared = await compare_account(
                conn, read_side.log, ledger.app, catalog, names, account_id
            )
            assert compared is not None, "caught up: no account is moving"
            assert compared.mismatches == []
            assert compared.account is not None
            assert compared.account.version == ledger.account(account_id).version
        every = [r["account_id"] for r in await conn.fetch("SELECT account_id FROM rm_accounts")]
        folded = [ledger.account(account_id) for account_id in every]
        assert await outstanding_mismatches(conn, folded, catalog) == []


async def test_every_read_model_equals_the_fold_after_random_commands(
    read_side: ReadSide, pg_ledger: Ledger
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


async def test_spendable_and_resource_limits_in_the_read_models_equal_the_fold(
    read_side: ReadSide, pg_ledger: Ledger
) -> None:
    """The cases random scripts reach only sometimes: purchased credits kept through a cancel
    to a plan that may not spend them, and a resource limit set, used, and cleared."""
    account = pg_ledger.new_account_id("spend")
    pg_ledger.ok("open_account", account, plan="starter")
    pg_ledger.ok(
        "purchase",
        account,
        pack="credits_1000",
        payment_reference="pi_spend",
        amount_paid=4000,
        currency="usd",
    )
    pg_ledger.ok("change_plan", account, plan="free")
    pg_ledger.ok("set_resource_limit", account, resource="qr-1", daily_limit=2)
    pg_ledger.ok("set_resource_limit", account, resource="qr-2", daily_limit=5)
    pg_ledger.ok("consume", account, action="send_message", resource="qr-1", quantity=2)
    pg_ledger.ok("set_resource_limit", account, resource="qr-2", daily_limit=None)
    await check(read_side, pg_ledger, [account])
    async with read_side.pool.acquire() as conn:
        credits = await conn.fetchrow(
            "SELECT available, spendable FROM rm_balances "
            "WHERE account_id = $1 AND credit_type = 'credits'",
            account,
        )
        limits = await conn.fetch(
            "SELECT resource, daily_limit FROM rm_resource_limits WHERE account_id = $1", account
        )
    assert (credits["available"], credits["spendable"]) == (1010, 10)
    assert [tuple(r) for r in limits] == [("qr-1", 2)]
    # `credits account show` lists them too.
    report = await account_report(read_side, account, events=5)
    assert [(r["resource"], r["daily_limit"]) for r in report["resources"]] == [("qr-1", 2)]

    pg_ledger.ok("change_plan", account, plan="starter")
    await check(read_side, pg_ledger, [account])
