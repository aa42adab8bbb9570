"""Acceptance: `GET /v1/accounts/{id}?as_of=T` answers the account as the ledger recorded it at
T, from the event store (commands through Kafka to the real ledger on PostgreSQL): each
command's reply balances at the instant after it, an event at exactly T counted, 404 before
the account opened, 422 for a malformed or a future T; portal tokens read their own account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.replies import Reply
from services.api.models import AccountView
from tests.api.test_api import Api, _unique

pytestmark = pytest.mark.integration


def rfc_3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_the_account_at_each_past_instant_has_the_balances_replied_then(
    client: httpx.AsyncClient,
) -> None:
    api = Api(client, _unique("asof"))
    sent: list[tuple[str, dict[str, Any]]] = [
        ("open_account", {"plan": "starter"}),
        ("consume", {"action": "generate", "quantity": 2}),
        ("grant", {"credit_type": "credits", "amount": 90, "source": "promotional"}),
        ("reserve", {"hold_id": "h1", "action": "generate", "ttl_seconds": 600}),
        ("consume", {"credit_type": "credits", "amount": 7}),
    ]
    after: list[tuple[datetime, Reply]] = []
    for command_type, fields in sent:
        response = await api.send(command_type, **fields)
        assert response.status_code == 200, response.text
        after.append((datetime.now(UTC), Reply.model_validate(response.json())))

    for at, reply in after:
        response = await client.get(
            f"/v1/accounts/{api.account_id}", params={"as_of": rfc_3339(at)}
        )
        assert response.status_code == 200, response.text
        view = AccountView.model_validate(response.json())
        assert view.balances == reply.balances
        assert view.position == reply.position
        assert view.as_of == at
        assert view.lots is not None and view.profile is None
    current = AccountView.model_validate((await api.get()).json())
    last = AccountView.model_validate((await api.get(as_of=rfc_3339(after[-1][0]))).json())
    assert last.balances == current.balances and last.version == current.version
    assert [(h.hold_id, h.amount, h.reserved_at) for h in last.holds] == [
        (h.hold_id, h.amount, h.reserved_at) for h in current.holds
    ]
    assert current.as_of is None and current.lots is None
    lots = {lot.lot_id: lot for lot in last.lots or []}
    assert (
        sum(lot.remaining - lot.held for lot in lots.values() if lot.credit_type == "credits")
        == last.balances["credits"].available
    )

    # An event at exactly T counts; a microsecond before the account opened, there was none.
    opened = current.opened_at
    exactly = await client.get(f"/v1/accounts/{api.account_id}", params={"as_of": rfc_3339(opened)})
    assert exactly.status_code == 200 and exactly.json()["version"] >= 1
    before = await client.get(
        f"/v1/accounts/{api.account_id}",
        params={"as_of": rfc_3339(opened - timedelta(microseconds=1))},
    )
    assert before.status_code == 404
    assert before.json()["error"]["code"] == "unknown_account"


@pytest.mark.parametrize(
    ("as_of", "status", "code"),
    [
        ("yesterday", 422, "invalid_request"),
        ("2026-01-31T10:00:00", 422, "invalid_request"),
        ("2026-02-30T10:00:00Z", 422, "invalid_request"),
        ("x" * 41, 422, "invalid_request"),
        ("2999-01-01T00:00:00Z", 422, "as_of_in_future"),
        ("2001-01-01T00:00:00+01:00", 404, "unknown_account"),
    ],
)
async def test_a_bad_or_early_as_of_has_a_stable_code(
    client: httpx.AsyncClient, as_of: str, status: int, code: str
) -> None:
    api = Api(client, _unique("asof-bad"))
    assert (await api.send("open_account", plan="free")).status_code == 200
    response = await client.get(f"/v1/accounts/{api.account_id}", params={"as_of": as_of})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    never = await client.get(
        "/v1/accounts/no-such-account", params={"as_of": "2020-01-01T00:00:00Z"}
    )
    assert never.status_code == 404 and never.json()["error"]["code"] == "unknown_account"


async def test_a_portal_token_reads_its_own_account_as_of_and_no_other(
    client: httpx.AsyncClient,
) -> None:
    mine, other = Api(client, _unique("asof-mine")), Api(client, _unique("asof-other"))
    for api in (mine, other):
        assert (await api.send("open_account", plan="free")).status_code == 200
    issued = await client.post(
        "/v1/portal-tokens", json={"account_id": mine.account_id, "ttl_seconds": 300}
    )
    assert issued.status_code in (200, 201), issued.text
    headers = {"Authorization": f"Bearer {issued.json()['token']}"}
    as_of = {"as_of": rfc_3339(datetime.now(UTC))}
    own = await client.get(f"/v1/accounts/{mine.account_id}", params=as_of, headers=headers)
    assert own.status_code == 200
    theirs = await client.get(f"/v1/accounts/{other.account_id}", params=as_of, headers=headers)
    assert theirs.status_code == 403
