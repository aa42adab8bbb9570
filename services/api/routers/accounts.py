"""Reads of one account: the account, its usage, its transactions (all from the read models),
and the account at a past time (`?as_of=`, from the event store: projections/account_at.py).

Read-your-writes: a command's reply carries `position`; passing it as `?min_position=N` makes a
read wait (at most `CREDITS_READ_WAIT_SECONDS`) until the read models it uses have applied it,
else 504 `read_model_behind`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Security

from domain.account import Account
from domain.catalog import Catalog
from domain.errors import ErrorCode
from domain.replies import Balance
from domain.usage import effective_limit
from projections import queries
from projections.account_at import AsOfInFuture, AsOfInvalid, account_at, describe, parse_as_of
from services.api.auth import PORTAL, authorize
from services.api.day_range import days_before, query_days
from services.api.errors import (
    AS_OF_IN_FUTURE,
    HttpError,
    invalid,
    unknown_account,
)
from services.api.models import (
    ACCOUNT_ID_PATTERN,
    AccountView,
    ApiError,
    HoldView,
    LotView,
    ResourceView,
    TransactionRow,
    TransactionsPage,
    UsagePage,
    UsageProfile,
    UsageRow,
)
from services.api.overview import account_overview, rate_window
from services.api.overview_models import AccountOverview
from services.api.read_wait import pool_at
from services.api.resources import Resources, app_resources

# Resources one account read lists (those with a limit of their own or used today).
MAX_RESOURCES_SHOWN = 500
DEFAULT_PAGE = 50
MAX_PAGE = 200
MAX_POSITION = 2**62
_CURSOR = re.compile(r"^([0-9]{1,18})\.([a-z][a-z0-9_]{0,63})$")
_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

AccountId = Annotated[
    str, Path(pattern=ACCOUNT_ID_PATTERN, description="the account id (1-128 of [A-Za-z0-9_.:@-])")
]
MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_POSITION,
        description="wait (bounded by CREDITS_READ_WAIT_SECONDS) until the read model has "
        "applied this position (a command reply's `position`); 504 read_model_behind otherwise",
    ),
]
FirstDay = Annotated[
    str | None,
    Query(
        alias="from",
        pattern=_DAY,
        json_schema_extra={"format": "date"},
        description="first day, UTC (default: 29 days before `to`)",
    ),
]
LastDay = Annotated[
    str | None,
    Query(
        alias="to",
        pattern=_DAY,
        json_schema_extra={"format": "date"},
        description="last day, UTC, inclusive (default: today); at most 366 days in all",
    ),
]
AsOf = Annotated[
    str | None,
    Query(
        max_length=40,
        json_schema_extra={"format": "date-time"},
        description="read the account as the ledger recorded it at this instant (RFC 3339 with "
        "an offset, e.g. 2026-01-31T10:00:00Z; an event at exactly this instant counts), from "
        "the event store: balances, lots and holds then. 404 unknown_account if it had not "
        "opened by then, 422 invalid_request if malformed, 422 as_of_in_future if after now; "
        "min_position is not needed (the event store is never behind)",
    ),
]
Bucket = Annotated[
    Literal["day", "month"], Query(description="rows per day (default) or per month")
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size (default 50)")]
Before = Annotated[
    str | None,
    Query(
        pattern=_CURSOR.pattern,
        description="the previous page's `next_before`, for the next (older) page",
    ),
]
Held = Annotated[Resources, Depends(app_resources)]

READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ApiError, "description": "no valid API key or portal token"},
    403: {"model": ApiError, "description": "the key's scope or the token's account differs"},
    404: {"model": ApiError, "description": "unknown_account"},
    422: {"model": ApiError, "description": "invalid_request: a bad parameter, named"},
    503: {"model": ApiError, "description": "PostgreSQL does not answer (Retry-After)"},
    504: {"model": ApiError, "description": "read_model_behind: min_position not reached"},
}

router = APIRouter(
    prefix="/v1/accounts/{account_id}",
    tags=["accounts"],
    dependencies=[Security(authorize, scopes=["read"])],
    responses=READ_ERRORS,
)


@router.get(
    "",
    operation_id="getAccount",
    summary="Balances per credit type, plan, next reset, open holds; a daily plan's usage profile;"
    " with as_of, all of it and the lots at a past instant",
    response_model=AccountView,
    openapi_extra=PORTAL,
)
async def get_account(
    account_id: AccountId,
    held: Held,
    min_position: MinPosition = None,
    as_of: AsOf = None,
) -> AccountView:
    if as_of is not None:
        return await _account_as_of(held, account_id, as_of)
    pool = await pool_at(held, ("balances", "usage"), min_position)
    async with pool.acquire() as conn:
        account = await queries.account(conn, account_id)
        if account is None:
            raise unknown_account(account_id)
        rows = await queries.balances(conn, account_id)
        balances = _balances(held.catalog, account["plan"], rows)
        holds = [
            HoldView(**_without(h, "account_id")) for h in await queries.holds(conn, account_id)
        ]
        resources = await _resources(conn, held.catalog, account)
        profile = await _profile(conn, held.catalog, account, balances)
    resets = [b.next_reset_at for b in balances.values() if b.next_reset_at is not None]
    return AccountView(
        account_id=account_id,
        plan=account["plan"],
        opened_at=account["opened_at"],
        scheduled_plan=account["scheduled_plan"],
        scheduled_at=account["scheduled_at"],
        next_reset_at=min(resets, default=None),
        balances=balances,
        holds=holds,
        resources=resources,
        profile=profile,
        version=account["version"],
        position=account["position"],
    )


@router.get(
    "/overview",
    operation_id="getAccountOverview",
    summary="The plan as the catalog means it: balance parts, money, rate and run-out, buying",
    response_model=AccountOverview,
    openapi_extra=PORTAL,
)
async def get_overview(
    account_id: AccountId,
    held: Held,
    min_position: MinPosition = None,
) -> AccountOverview:
    pool = await pool_at(held, ("balances", "usage"), min_position)
    today = datetime.now(UTC).date()
    async with pool.acquire() as conn:
        account = await queries.account(conn, account_id)
        if account is None:
            raise unknown_account(account_id)
        rows = await queries.balances(conn, account_id)
        first = days_before(today, rate_window(account["opened_at"], today) - 1)
        spent = await queries.spent_since(conn, account_id, first)
    return account_overview(held.catalog, account, rows, spent, today)


@router.get(
    "/usage",
    operation_id="getUsage",
    summary="Usage per day (or month), action and credit type: count, credits spent, cost",
    response_model=UsagePage,
    response_model_by_alias=True,
    openapi_extra=PORTAL,
)
async def get_usage(
    account_id: AccountId,
    held: Held,
    first_day: FirstDay = None,
    last_day: LastDay = None,
    bucket: Bucket = "day",
    min_position: MinPosition = None,
) -> UsagePage:
    first, last = query_days(first_day, last_day)
    pool = await pool_at(held, ("usage",), min_position)
    async with pool.acquire() as conn:
        await _existing(conn, account_id)
        rows = await queries.usage(conn, account_id, first, last, bucket)
    return UsagePage(
        account_id=account_id,
        bucket=bucket,
        start=first,
        end=last,
        usage=[UsageRow(**{**row, "action": row["action"] or None}) for row in rows],
    )


@router.get(
    "/transactions",
    operation_id="getTransactions",
    summary="The account's ledger movements, newest first, with available before and after",
    response_model=TransactionsPage,
    openapi_extra=PORTAL,
)
async def get_transactions(
    account_id: AccountId,
    held: Held,
    limit: Limit = DEFAULT_PAGE,
    before: Before = None,
    min_position: MinPosition = None,
) -> TransactionsPage:
    cursor = _cursor(before)
    pool = await pool_at(held, ("transactions",), min_position)
    async with pool.acquire() as conn:
        await _existing(conn, account_id)
        rows = await queries.transactions(conn, account_id, cursor, limit)
    items = [TransactionRow(**_without(row, "account_id")) for row in rows]
    next_before = None
    if len(items) == limit:
        next_before = f"{items[-1].version}.{items[-1].credit_type}"
    return TransactionsPage(account_id=account_id, transactions=items, next_before=next_before)


async def _account_as_of(held: Resources, account_id: str, as_of: str) -> AccountView:
    """The account folded from its stored events up to `as_of` (no usage profile: that is a
    read model's view of today)."""
    try:
        at = parse_as_of(as_of, datetime.now(UTC))
    except AsOfInvalid as error:
        raise invalid(f"as_of: {error}") from None
    except AsOfInFuture as error:
        raise HttpError(422, AS_OF_IN_FUTURE, f"as_of: {error}") from None
    pool = await held.pool()
    async with pool.acquire() as conn:
        fold = await account_at(conn, held.mapper, account_id, at)
    if fold is None or fold.account is None or fold.position is None:
        raise HttpError(
            404, ErrorCode.unknown_account.value, f"no account {account_id} at {at.isoformat()}"
        )
    seen = describe(fold.account, held.catalog, at, fold.position, fold.reserved_at)
    rows = seen["balances"]
    return AccountView(
        **{k: v for k, v in seen.items() if k not in ("balances", "holds", "lots")},
        balances=_balances(
            held.catalog, seen["plan"], [{"credit_type": ct, **b} for ct, b in rows.items()]
        ),
        holds=[HoldView(**h) for h in seen["holds"]],
        lots=[LotView(**lot) for lot in seen["lots"]],
        resources=_resources_at(fold.account, held.catalog, at),
        profile=None,
    )


def _resources_at(account: Account, catalog: Catalog, at: datetime) -> list[ResourceView]:
    """The resources as recorded at `at`: the account's own limits, and the use of `at`'s UTC day
    (what the ledger had counted by then)."""
    plan = catalog.plans.get(account.plan)
    plan_limit = plan.resource_daily_limit if plan is not None else None
    usage = account.usage
    used = usage.by_resource if usage.day == at.astimezone(UTC).date().isoformat() else {}
    names = sorted(set(account.resource_limits) | set(used))[:MAX_RESOURCES_SHOWN]
    return [
        ResourceView(
            resource=name,
            daily_limit=account.resource_limits.get(name),
            plan_limit=plan_limit,
            effective_limit=effective_limit(account.resource_limits.get(name), plan_limit),
            used_today=used.get(name, 0),
        )
        for name in names
    ]


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


def _spendable(catalog: Catalog, plan: str, credit_type: str, row: dict[str, Any]) -> int:
    """The row's; a row stored before the column existed (null until the account's next event
    or a rebuild) by the projection's rule."""
    if row["spendable"] is not None:
        return int(row["spendable"])
    spec = catalog.credit_types.get(credit_type)
    locked = spec is not None and not catalog.may_spend_purchased(plan, credit_type)
    return int(row["available"]) - (int(row["purchased_remaining"]) if locked else 0)


def _balances(catalog: Catalog, plan: str, rows: list[dict[str, Any]]) -> dict[str, Balance]:
    """Every credit type of the catalog (zero when the account never had any), and any other."""
    found = {row["credit_type"]: row for row in rows}
    result = {}
    for credit_type in sorted(set(catalog.credit_types) | set(found)):
        row = found.get(credit_type)
        result[credit_type] = Balance(
            available=row["available"] if row else 0,
            spendable=_spendable(catalog, plan, credit_type, row) if row else 0,
            held=row["held"] if row else 0,
            allocation_remaining=row["allocation_remaining"] if row else 0,
            purchased_remaining=row["purchased_remaining"] if row else 0,
            next_reset_at=row["next_reset_at"] if row else None,
        )
    return result


async def _resources(
    conn: asyncpg.Connection, catalog: Catalog, account: dict[str, Any]
) -> list[ResourceView]:
    plan = catalog.plans.get(account["plan"])
    plan_limit = plan.resource_daily_limit if plan is not None else None
    today = datetime.now(UTC).date()
    rows = await queries.resources(conn, account["account_id"], today, MAX_RESOURCES_SHOWN)
    return [
        ResourceView(
            resource=row["resource"],
            daily_limit=row["daily_limit"],
            plan_limit=plan_limit,
            effective_limit=effective_limit(row["daily_limit"], plan_limit),
            used_today=row["used"],
        )
        for row in rows
    ]


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
