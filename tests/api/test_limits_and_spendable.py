"""Over HTTP, through Kafka to the ledger and back from the read models: an account's own
limit on one resource (set with a `write` key, within the plan's cap, shown with today's use
by `GET /v1/accounts/{id}`), and `spendable` beside `available` in replies, refusals and the
account read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from domain.replies import Reply
from services.api import keys
from services.api.models import AccountView
from tests.api.conftest import bearer

pytestmark = pytest.mark.integration


class Account:
    def __init__(self, client: httpx.AsyncClient, prefix: str) -> None:
        self.client = client
        self.account_id = f"{prefix}-{datetime.now(UTC):%H%M%S%f}"
        self.sent = 0
        self.position = 0

    async def send(self, type: str, headers: Any = None, **fields: Any) -> httpx.Response:
        self.sent += 1
        body = {"type": type, "command_id": f"{self.account_id}-{self.sent}", **fields}
        url = f"/v1/accounts/{self.account_id}/commands"
        response = await self.client.post(url, json=body, headers=headers)
        if response.status_code != 403:
            self.position = max(self.position, Reply.model_validate(response.json()).position or 0)
        return response

    async def view(self) -> AccountView:
        response = await self.client.get(
            f"/v1/accounts/{self.account_id}", params={"min_position": self.position}
        )
        assert response.status_code == 200, response.text
        return AccountView.model_validate(response.json())


async def test_a_free_plan_shows_purchased_credits_available_but_not_spendable(client):
    account = Account(client, "spendable")
    assert (await account.send("open_account", plan="starter")).status_code == 200
    bought = await account.send(
        "purchase", pack="credits_1000", payment_reference="pi_1", amount_paid=4000, currency="usd"
    )
    assert bought.status_code == 200, bought.text
    cancelled = Reply.model_validate((await account.send("change_plan", plan="free")).json())
    credits = cancelled.balances["credits"]
    assert (credits.available, credits.spendable, credits.purchased_remaining) == (1010, 10, 1000)

    # The credit type may overdraw by 50: a consume may take spendable + 50, not one more.
    refused = await account.send("consume", credit_type="credits", amount=61)
    assert refused.status_code == 409
    reply = Reply.model_validate(refused.json())
    assert reply.error is not None and reply.error.code == "insufficient_credits"
    assert "needs 61, 10 spendable" in reply.error.message
    assert reply.balances["credits"].spendable == 10, "the refusal quotes it"

    view = await account.view()
    assert view.balances["credits"].spendable == 10
    assert view.balances["credits"].available == 1010
    assert view.balances == cancelled.balances, "the read model carries what the reply said"


async def test_a_resource_limit_set_with_a_write_key_holds_and_the_read_shows_it(
    client, scope_keys
):
    account = Account(client, "limits")
    assert (await account.send("open_account", plan="starter")).status_code == 200  # cap 200
    write = bearer(scope_keys[keys.Scope.write])
    read = bearer(scope_keys[keys.Scope.read])

    forbidden = await account.send(
        "set_resource_limit", headers=read, resource="qr-1", daily_limit=2
    )
    assert forbidden.status_code == 403
    above = await account.send(
        "set_resource_limit", headers=write, resource="qr-1", daily_limit=201
    )
    assert above.status_code == 409
    assert above.json()["error"]["code"] == "limit_above_plan"
    limited = await account.send(
        "set_resource_limit", headers=write, resource="qr-1", daily_limit=2
    )
    assert limited.status_code == 200, limited.text
    assert limited.json()["result"]["effective_limit"] == 2

    for _ in range(2):
        used = await account.send("consume", headers=write, action="send_message", resource="qr-1")
        assert used.status_code == 200, used.text
    await account.send("consume", headers=write, action="send_message", resource="qr-2")
    refused = await account.send("consume", headers=write, action="send_message", resource="qr-1")
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "resource_limit_reached",
        "message": "qr-1: 2 of 2 used today (UTC), the account's own limit for it",
    }

    view = await account.view()
    assert [r.model_dump() for r in view.resources] == [
        {
            "resource": "qr-1",
            "daily_limit": 2,
            "plan_limit": 200,
            "effective_limit": 2,
            "used_today": 2,
        },
        {
            "resource": "qr-2",
            "daily_limit": None,
            "plan_limit": 200,
            "effective_limit": 200,
            "used_today": 1,
        },
    ]

    cleared = await account.send(
        "set_resource_limit", headers=write, resource="qr-1", daily_limit=None
    )
    assert cleared.status_code == 200 and cleared.json()["result"]["effective_limit"] == 200
    view = await account.view()
    assert (view.resources[0].daily_limit, view.resources[0].used_today) == (None, 2)
