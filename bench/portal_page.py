"""Server time to answer the Plan & Usage page's data for a large account (goal p99 <= 100 ms).

The account has 10,000 transactions and 90 days of usage (5 actions a day) in the read models,
written straight into their tables (this times the reads, not the projector). One page load is
what the page asks when it opens: the overview, 90 days of usage and the first history page,
each a request through the app (ASGI, no network) with a portal token, one after the other.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from bench.rows import BenchRow, percentile
from infra.settings import Settings
from services.api.app import close_app, create_app

ACCOUNT = "bench-portal"
TRANSACTIONS = 10_000
USAGE_DAYS = 90
ACTIONS = ("lookup", "send_message", "generate", "export", "search")
LOADS = 200
GOAL_MS = 100.0


async def _fill(app_settings: Settings) -> None:
    app = create_app(app_settings)
    pool = await app.state.resources.pool()  # creates the read-model tables
    now = datetime.now(UTC)
    opened = now - timedelta(days=USAGE_DAYS)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO rm_accounts VALUES ($1, 'pro', $2, 'bench', $3, $3, NULL, NULL)",
            ACCOUNT,
            opened,
            TRANSACTIONS,
        )
        await conn.execute(
            "INSERT INTO rm_balances (account_id, credit_type, available, spendable, held, "
            "allocation_remaining, purchased_remaining, overdraft, debt, next_reset_at) "
            "VALUES ($1, 'credits', 5000, 5000, 0, 4000, 1000, 0, 0, $2)",
            ACCOUNT,
            now + timedelta(days=20),
        )
        await conn.copy_records_to_table(
            "rm_transactions",
            # Named: the table gains columns at its end (the origins), null here.
            columns=[
                "account_id",
                "version",
                "credit_type",
                "position",
                "at",
                "kind",
                "amount",
                "delta",
                "available_before",
                "available_after",
                "reference",
                "command_id",
            ],
            records=[
                (
                    ACCOUNT,
                    version,
                    "credits",
                    version,
                    opened + timedelta(seconds=version * 700),
                    "usage",
                    1,
                    -1,
                    10_000 - version + 1,
                    10_000 - version,
                    ACTIONS[version % len(ACTIONS)],
                    f"c-{version}",
                )
                for version in range(1, TRANSACTIONS + 1)
            ],
        )
        await conn.copy_records_to_table(
            "rm_usage_daily",
            records=[
                (ACCOUNT, (now - timedelta(days=d)).date(), action, "credits", 20, 20, 20, [])
                for d in range(USAGE_DAYS)
                for action in ACTIONS
            ],
        )
    await close_app(app)


async def portal_rows(settings: Settings) -> list[BenchRow]:
    app_settings = settings.model_copy(update={"portal_token_secrets": "bench-portal-secret"})
    await _fill(app_settings)
    app = create_app(app_settings)
    tokens = app.state.resources.portal_tokens
    token = tokens.encode(tokens.issue(ACCOUNT, 3600))
    today = datetime.now(UTC).date()
    first = today - timedelta(days=USAGE_DAYS - 1)
    paths = (
        f"/v1/accounts/{ACCOUNT}/overview",
        f"/v1/accounts/{ACCOUNT}/usage?from={first}&to={today}",
        f"/v1/accounts/{ACCOUNT}/transactions?limit=20",
    )
    timings_ms: list[float] = []
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            for load in range(LOADS + 10):
                started = time.perf_counter()
                for path in paths:
                    response = await client.get(path)
                    assert response.status_code == 200, response.text
                if load >= 10:  # the first loads warm the pool and the statement caches
                    timings_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await close_app(app)
    timings_ms.sort()
    note = (
        f"overview + 90 days of usage + first history page, {TRANSACTIONS:,} transactions; "
        f"goal <= {GOAL_MS:.0f} ms"
    )
    return [
        BenchRow("Plan & Usage page data, p50", percentile(timings_ms, 0.5), "ms", note),
        BenchRow("Plan & Usage page data, p99", percentile(timings_ms, 0.99), "ms", note),
    ]
