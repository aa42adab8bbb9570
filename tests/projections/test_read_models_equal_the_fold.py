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

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.catalog import Catalog
from projections.ops import account_report
from projections.read_side import ReadSide
from projections.reconcile import compare_account, outstanding_mismatches
from tests.kit.command_scripts import PLANS, STEPS, play
from tests.kit.ledger import Ledger

pytestmark = pytest.mark.integration

steps = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 1000)), min_size=4, max_size=30)


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
        play(pg_ledger, script, lambda n: accounts[n % len(accounts)])
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
