"""Acceptance: `GET /v1/analytics` (ops or admin keys) answers revenue by pack and currency,
credits outstanding (paid, granted, owed), breakage, conversion and refills over a period, from
the analytics read model, after commands that went through Kafka to the real ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.api import keys
from services.api.analytics_models import AnalyticsReport
from tests.api.conftest import bearer
from tests.api.test_api import Api, _unique

pytestmark = pytest.mark.integration


async def report(client: httpx.AsyncClient, position: int, **params: Any) -> AnalyticsReport:
    response = await client.get("/v1/analytics", params={"min_position": position, **params})
    assert response.status_code == 200, response.text
    return AnalyticsReport.model_validate(response.json())


def revenue(found: AnalyticsReport, pack: str) -> tuple[int, int, int]:
    rows = [r for r in found.revenue if r.pack == pack and r.currency == "usd"]
    return (
        sum(r.purchases for r in rows),
        sum(r.amount_cents for r in rows),
        sum(r.credits for r in rows),
    )


def outstanding(found: AnalyticsReport, credit_type: str) -> dict[str, int]:
    for row in found.outstanding:
        if row.credit_type == credit_type:
            return row.model_dump(exclude={"credit_type"})
    return dict.fromkeys(("available", "held", "paid", "paid_held", "granted", "owed"), 0)


def breakage(found: AnalyticsReport, credit_type: str) -> tuple[int, int]:
    rows = [r for r in found.breakage if r.credit_type == credit_type]
    return sum(r.expired for r in rows), sum(r.forfeited for r in rows)


async def test_analytics_counts_what_the_commands_did(
    client: httpx.AsyncClient, scope_keys: dict[keys.Scope, str]
) -> None:
    api = Api(client, _unique("analytics"))
    assert (await api.send("open_account", plan="free")).status_code == 200
    before = await report(client, api.position)
    purchase = {"pack": "messages_100", "amount_paid": 300, "currency": "usd"}
    for n in range(2):
        sent = await api.send("purchase", payment_reference=f"{api.account_id}-pi-{n}", **purchase)
        assert sent.status_code == 200, sent.text
    assert (await api.send("consume", action="send_message", quantity=30)).status_code == 200
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    granted = await api.send(
        "grant",
        credit_type="storage",
        amount=9,
        source="promotional",
        expires_at=expires_at.isoformat(),
    )
    assert granted.status_code == 200, granted.text
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.2)
    assert (await api.send("expire")).status_code == 200
    after = await report(client, api.position)

    assert after.start == after.end - timedelta(days=29) and after.end == datetime.now(UTC).date()
    assert after.position >= api.position
    bought = revenue(after, "messages_100")
    assert bought == tuple(
        a + b for a, b in zip(revenue(before, "messages_100"), (2, 600, 200), strict=True)
    )
    assert after.refills.refills == before.refills.refills + 2
    assert after.refills.accounts == before.refills.accounts + 1
    assert after.refills.most_per_account >= 2
    assert after.conversion.started_free == before.conversion.started_free
    assert after.conversion.converted == before.conversion.converted + 1
    assert after.conversion.conversions.get("purchase", 0) == (
        before.conversion.conversions.get("purchase", 0) + 1
    )
    # The free plan's 20 messages go first; 10 of the 200 paid ones are spent.
    was, now = outstanding(before, "messages"), outstanding(after, "messages")
    assert now["paid"] - was["paid"] == 190
    assert now["available"] - was["available"] == 170
    assert now["granted"] - was["granted"] == -20
    for row in after.outstanding:
        assert row.available == row.paid + row.granted - row.owed
    assert breakage(after, "storage")[0] == breakage(before, "storage")[0] + 9

    # A period before any of it: nothing of the period, outstanding still now.
    old = await report(client, api.position, **{"from": "2001-01-01", "to": "2001-01-31"})
    assert old.revenue == [] and old.breakage == [] and old.refills.refills == 0
    assert old.conversion.started_free == 0 and old.conversion.rate is None
    assert old.outstanding == after.outstanding

    ops = await client.get("/v1/analytics", headers=bearer(scope_keys[keys.Scope.ops]))
    assert ops.status_code == 200
    for scope in (keys.Scope.read, keys.Scope.write):
        refused = await client.get("/v1/analytics", headers=bearer(scope_keys[scope]))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"from": "2024-01-01", "to": "2026-01-01"},
        {"from": "2026-02-30"},
        {"to": "yesterday"},
    ],
)
async def test_a_bad_period_is_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/v1/analytics", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
