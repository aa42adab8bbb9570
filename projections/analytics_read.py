"""The analytics read over a period of UTC days (`GET /v1/analytics`), from the analytics read
model (projections/analytics.py). Credits outstanding are as of now, whatever the period."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg


async def analytics(conn: asyncpg.Connection, first: date, last: date) -> dict[str, Any]:
    """Revenue, breakage, conversion and refills of the days `first`..`last` (inclusive), and
    credits outstanding now."""
    start = datetime.combine(first, time(), UTC)
    # The instant after `last` (the calendar's last day has none: its last microsecond then).
    end = (
        datetime.max.replace(tzinfo=UTC)
        if last == date.max
        else datetime.combine(last + timedelta(days=1), time(), UTC)
    )
    revenue = await conn.fetch(
        "SELECT source, pack, currency, sum(purchases) AS purchases, "
        "sum(amount_cents) AS amount_cents, sum(credits) AS credits "
        "FROM rm_analytics_revenue_daily WHERE day BETWEEN $1 AND $2 "
        "GROUP BY source, pack, currency ORDER BY source, pack, currency",
        first,
        last,
    )
    breakage = await conn.fetch(
        "SELECT credit_type, "
        "coalesce(sum(credits) FILTER (WHERE kind = 'expired'), 0) AS expired, "
        "coalesce(sum(credits) FILTER (WHERE kind = 'forfeited'), 0) AS forfeited "
        "FROM rm_analytics_breakage WHERE day BETWEEN $1 AND $2 "
        "GROUP BY credit_type ORDER BY credit_type",
        first,
        last,
    )
    outstanding = await conn.fetch(
        "SELECT credit_type, coalesce(o.available, 0) AS available, coalesce(o.held, 0) AS held, "
        "coalesce(s.paid_available, 0) AS paid_available, coalesce(s.paid_held, 0) AS paid_held, "
        "coalesce(s.owed, 0) AS owed FROM rm_analytics_outstanding o "
        "FULL JOIN rm_analytics_outstanding_split s USING (credit_type) ORDER BY credit_type"
    )
    cohort = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE started_free) AS started_free, "
        "count(*) FILTER (WHERE started_free AND converted_at < $2) AS converted "
        "FROM rm_analytics_accounts WHERE opened_at >= $1 AND opened_at < $2",
        start,
        end,
    )
    conversions = await conn.fetch(
        "SELECT conversion, count(*) AS accounts FROM rm_analytics_accounts "
        "WHERE converted_at >= $1 AND converted_at < $2 GROUP BY conversion",
        start,
        end,
    )
    refills = await conn.fetchrow(
        "SELECT count(*) AS accounts, coalesce(sum(n), 0) AS refills, "
        "coalesce(max(n), 0) AS most FROM (SELECT sum(refills) AS n FROM rm_analytics_refills "
        "WHERE day BETWEEN $1 AND $2 GROUP BY account_id) per_account",
        first,
        last,
    )
    assert cohort is not None and refills is not None
    started, converted = int(cohort["started_free"]), int(cohort["converted"])
    accounts, refilled = int(refills["accounts"]), int(refills["refills"])
    return {
        "revenue": [
            {
                "source": r["source"],
                "pack": r["pack"] or None,
                "currency": r["currency"],
                "purchases": int(r["purchases"]),
                "amount_cents": int(r["amount_cents"]),
                "credits": int(r["credits"]),
            }
            for r in revenue
        ],
        "outstanding": [
            {
                "credit_type": r["credit_type"],
                "available": int(r["available"]),
                "held": int(r["held"]),
                "paid": int(r["paid_available"]),
                "paid_held": int(r["paid_held"]),
                "granted": int(r["available"]) + int(r["owed"]) - int(r["paid_available"]),
                "granted_held": int(r["held"]) - int(r["paid_held"]),
                "owed": int(r["owed"]),
            }
            for r in outstanding
        ],
        "breakage": [
            {
                "credit_type": r["credit_type"],
                "expired": int(r["expired"]),
                "forfeited": int(r["forfeited"]),
            }
            for r in breakage
        ],
        "conversion": {
            "started_free": started,
            "converted": converted,
            "rate": converted / started if started else None,
            "conversions": {r["conversion"]: int(r["accounts"]) for r in conversions},
        },
        "refills": {
            "accounts": accounts,
            "refills": refilled,
            "per_account": refilled / accounts if accounts else None,
            "most_per_account": int(refills["most"]),
        },
    }
