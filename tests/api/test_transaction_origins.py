"""Acceptance: every row of `GET /v1/accounts/{id}/transactions` names its origin (pack,
payment reference, top-up, hold, plan allocation and period, reason), through the real ledger
(commands over Kafka), the projector and the read model on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.api.models import TransactionsPage
from tests.api.test_api import Api

pytestmark = pytest.mark.integration


async def test_every_transaction_row_names_its_origin(client: httpx.AsyncClient) -> None:
    api = Api(client, f"origin-{datetime.now(UTC):%H%M%S%f}")
    await api.send("open_account", plan="pro")
    await api.send(
        "purchase",
        pack="credits_1000",
        payment_reference="pi_pack",
        amount_paid=4000,
        currency="usd",
    )
    requested = await api.send("request_top_up", credit_type="credits", amount=500)
    top_up_id = requested.json()["result"]["top_up_id"]
    await api.send(
        "purchase",
        credit_type="credits",
        top_up_id=top_up_id,
        payment_reference="pi_top_up",
        amount_paid=2000,
        currency="usd",
    )
    await api.send("grant", credit_type="credits", amount=50, source="admin", reference="SUP-42")
    await api.send("reserve", hold_id="h-1", action="generate", ttl_seconds=600)
    await api.send("capture", hold_id="h-1")
    await api.send("consume", action="lookup")
    revoked = await api.send("revoke", payment_reference="pi_pack", reason="chargeback")
    assert revoked.json()["status"] == "accepted", revoked.json()

    response = await api.get("/transactions", limit=200)
    assert response.status_code == 200
    page = TransactionsPage.model_validate(response.json())
    rows = [t.model_dump(mode="json") for t in reversed(page.transactions)]
    origins: dict[tuple[str, str], dict[str, Any]] = {
        (r["kind"], r["credit_type"]): {k: v for k, v in r["origin"].items() if v is not None}
        for r in rows
    }

    allocation = origins[("allocation", "credits")]
    assert allocation.pop("period_start") < allocation.pop("period_end")
    assert allocation == {
        "source": "allocation",
        "plan": "pro",
        "period_id": allocation["period_id"],
        "reason": "opened",
    }
    assert origins[("purchase", "credits")] == {
        "source": "purchase",
        "pack": "credits_1000",
        "payment_reference": "pi_pack",
    }
    assert origins[("top_up", "credits")] == {
        "source": "top_up",
        "top_up_id": top_up_id,
        "payment_reference": "pi_top_up",
    }
    assert origins[("grant", "credits")] == {"source": "admin", "reason": "SUP-42"}
    assert origins[("reserve", "credits")] == {"source": "hold", "hold_id": "h-1"}
    assert origins[("capture", "credits")] == {"source": "hold", "hold_id": "h-1"}
    assert origins[("usage", "credits")] == {"source": "usage"}
    assert origins[("revoke", "credits")] == {
        "source": "revocation",
        "payment_reference": "pi_pack",
        "reason": "chargeback",
    }
    assert all(r["origin"] is not None for r in rows), "no row without its origin"
