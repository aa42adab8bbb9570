"""The account's plan for checkout, read from the read models (`rm_accounts`, written by the
projector) through asyncpg: the payment side never opens, nor imports, the ledger's event store
(tests/stack/test_dependency_direction.py).

The read model trails the ledger by the projector's delay: an account opened a moment ago may
not be there yet (checkout answers `unknown_account`; the caller retries), and a plan changed a
moment ago may still show the old one. Neither can cost a customer money: the ledger decides
again when the payment lands, and a paid purchase it refuses is refunded (purchases.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from projections.balances import ACCOUNTS
from services.payments.pool import PoolOf

PlanOf = Callable[[str], Awaitable[str | None]]


def read_model_plan_of(pool_of: PoolOf, *, acquire_timeout_seconds: float) -> PlanOf:
    """`plan_of(account_id)`: the account's plan, None when the read model has no such account
    (or no read model exists yet: no projector has run, so no account is known)."""

    async def plan_of(account_id: str) -> str | None:
        pool = await pool_of()
        async with pool.acquire(timeout=acquire_timeout_seconds) as conn:
            try:
                plan = await conn.fetchval(
                    f"SELECT plan FROM {ACCOUNTS.name} WHERE account_id = $1", account_id
                )
            except asyncpg.UndefinedTableError:
                return None
        return None if plan is None else str(plan)

    return plan_of
