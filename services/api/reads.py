"""Read endpoints: an account, its usage, its transactions (all from the read models).

Read-your-writes: a command's reply carries `position`; passing it as `?min_position=N` makes a
read wait (at most `CREDITS_READ_WAIT_SECONDS`) until the read models it uses have applied it,
else 504 `read_model_behind`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.catalog import Catalog
from domain.replies import Balance
from projections import queries
from services.api import params
from services.api.errors import READ_MODEL_BEHIND, HttpError, invalid, unknown_account
from services.api.models import (
    AccountView,
    HoldView,
    TransactionRow,
    TransactionsPage,
    UsagePage,
    UsageProfile,
    UsageRow,
)
from services.api.resources import Resources

MAX_USAGE_DAYS = 366
DEFAULT_USAGE_DAYS = 30
DEFAULT_PAGE = 50
MAX_PAGE = 200
_CURSOR = re.compile(r"^([0-9]{1,18})\.([a-z][a-z0-9_]{0,63})$")


async def get_account(request: Request) -> JSONResponse:
    resources: Resources = request.app.state.resources
    account_id = params.account_id(request)
    pool = await _pool_at(request, ("balances", "usage"))
    async with pool.acquire() as conn:
        account = await queries.account(conn, account_id)
        if account is None:
            raise unknown_account(account_id)
        balances = _balances(resources.catalog, await queries.balances(conn, account_id))
        holds = [
            HoldView(**_without(h, "account_id")) for h in await queries.holds(conn, account_id)
        ]
        profile = await _profile(conn, resources.catalog, account, balances)
    resets = [b.next_reset_at for b in balances.values() if b.next_reset_at is not None]
    view = AccountView(
        account_id=account_id,
        plan=account["plan"],
        opened_at=account["opened_at"],
        scheduled_plan=account["scheduled_plan"],
        scheduled_at=account["scheduled_at"],
        next_reset_at=min(resets, default=None),
        balances=balances,
        holds=holds,
        profile=profile,
        version=account["version"],
        position=account["position"],
    )
    return JSONResponse(view.model_dump(mode="json"))


async def get_usage(request: Request) -> JSONResponse:
    account_id = params.account_id(request)
    today = datetime.now(UTC).date()
    last = params.day(request, "to", today)
    first = params.day(request, "from", last - timedelta(days=DEFAULT_USAGE_DAYS - 1))
    bucket = params.choice(request, "bucket", "day", ("day", "month"))
    if first > last:
        raise invalid("from: must not be after to")
    if (last - first).days >= MAX_USAGE_DAYS:
        raise invalid(f"from..to: at most {MAX_USAGE_DAYS} days")
    pool = await _pool_at(request, ("usage",))
    async with pool.acquire() as conn:
        await _existing(conn, account_id)
        rows = await queries.usage(conn, account_id, first, last, bucket)
    page = UsagePage(
        account_id=account_id,
        bucket=bucket,
        start=first,
        end=last,
        usage=[UsageRow(**{**row, "action": row["action"] or None}) for row in rows],
    )
    return JSONResponse(page.model_dump(mode="json", by_alias=True))


async def get_transactions(request: Request) -> JSONResponse:
    account_id = params.account_id(request)
    limit = params.integer(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    assert limit is not None
    before = _cursor(request.query_params.get("before"))
    pool = await _pool_at(request, ("transactions",))
    async with pool.acquire() as conn:
        await _existing(conn, account_id)
        rows = await queries.transactions(conn, account_id, before, limit)
    items = [TransactionRow(**_without(row, "account_id")) for row in rows]
    next_before = None
    if len(items) == limit:
        next_before = f"{items[-1].version}.{items[-1].credit_type}"
    page = TransactionsPage(account_id=account_id, transactions=items, next_before=next_before)
    return JSONResponse(page.model_dump(mode="json"))


async def _pool_at(request: Request, projections: tuple[str, ...]) -> asyncpg.Pool:
    """The pool, once the read models have reached `min_position` (if asked)."""
    resources: Resources = request.app.state.resources
    min_position = params.integer(request, "min_position", None, 0, 2**62)
    pool = await resources.pool()
    if min_position is not None:
        timeout_seconds = resources.settings.read_wait_seconds
        if not await queries.wait_for_position(pool, projections, min_position, timeout_seconds):
            raise HttpError(
                504,
                READ_MODEL_BEHIND,
                f"read model has not reached position {min_position} in {timeout_seconds} s",
            )
    return pool


async def _existing(conn: asyncpg.Connection, account_id: str) -> None:
    if await queries.account(conn, account_id) is None:
        raise unknown_account(account_id)


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    match = _CURSOR.match(raw)
    if match is None:
        raise invalid("before: the next_before of the previous page")
    return int(match.group(1)), match.group(2)


def _balances(catalog: Catalog, rows: list[dict[str, Any]]) -> dict[str, Balance]:
    """Every credit type of the catalog (zero when the account never had any), and any other."""
    found = {row["credit_type"]: row for row in rows}
    result = {}
    for credit_type in sorted(set(catalog.credit_types) | set(found)):
        row = found.get(credit_type)
        result[credit_type] = Balance(
            available=row["available"] if row else 0,
            held=row["held"] if row else 0,
            allocation_remaining=row["allocation_remaining"] if row else 0,
            purchased_remaining=row["purchased_remaining"] if row else 0,
            next_reset_at=row["next_reset_at"] if row else None,
        )
    return result


async def _profile(
    conn: asyncpg.Connection,
    catalog: Catalog,
    account: dict[str, Any],
    balances: dict[str, Balance],
) -> UsageProfile | None:
    """For a plan with a daily allocation (seed 004): the product's usage card."""
    plan = catalog.plans.get(account["plan"])
    if plan is None:
        return None
    daily = sorted(ct for ct, a in plan.allocations.items() if a.period == "day")
    if not daily:
        return None
    credit_type = daily[0]
    today: date = datetime.now(UTC).date()
    spent_today, per_action = await queries.usage_totals(
        conn, account["account_id"], credit_type, today
    )
    balance = balances[credit_type]
    return UsageProfile(
        credit_type=credit_type,
        credits_used_today=spent_today,
        credits_remaining=balance.available,
        credits_per_day=plan.allocations[credit_type].amount,
        next_reset_time=balance.next_reset_at,
        totals_per_action=per_action,
    )


def _without(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in columns}
