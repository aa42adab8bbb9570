"""Acceptance: every endpoint answers with the documented shapes (the pydantic models the
OpenAPI document is generated from, which forbid extra fields); unknown accounts are 404
`unknown_account`; bad parameters are 422 with a message; reads can wait for a position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.replies import Reply
from infra.readiness import READINESS
from infra.settings import PROJECT_DIR, Settings
from projections.runner import ReadSide
from services.api.app import create_app
from services.api.models import AccountView, ApiError, Readiness, TransactionsPage, UsagePage

pytestmark = pytest.mark.integration

SEED_004 = PROJECT_DIR / "domain" / "catalogs" / "seed_004_docweb.toml"


@pytest.fixture(scope="module")
async def projector_running(read_side: ReadSide) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(read_side.projector().run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await app.state.resources.close()


@pytest.fixture
async def client(settings: Settings, projector_running: None) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(settings):
        yield client


class Api:
    def __init__(self, client: httpx.AsyncClient, account_id: str) -> None:
        self.client = client
        self.account_id = account_id
        self.sent = 0
        self.position = 0

    async def send(self, type: str, **fields: Any) -> httpx.Response:
        self.sent += 1
        body = {"type": type, "command_id": f"{self.account_id}-{self.sent}", **fields}
        response = await self.client.post(f"/v1/accounts/{self.account_id}/commands", json=body)
        reply = Reply.model_validate(response.json())
        self.position = max(self.position, reply.position or 0)
        return response

    async def get(self, path: str = "", **params: Any) -> httpx.Response:
        params.setdefault("min_position", self.position)
        return await self.client.get(f"/v1/accounts/{self.account_id}{path}", params=params)


def _unique(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%H%M%S%f}"


async def test_account_answers_balances_plan_holds_after_the_command_position(client):
    api = Api(client, _unique("api"))
    opened = await api.send("open_account", plan="starter")
    assert opened.status_code == 200 and opened.json()["status"] == "accepted"
    reserved = await api.send("reserve", hold_id="h1", action="generate", ttl_seconds=600)
    assert reserved.status_code == 200

    response = await api.get()

    assert response.status_code == 200
    view = AccountView.model_validate(response.json())
    reply = Reply.model_validate(reserved.json())
    assert view.plan == "starter" and view.position == api.position
    assert view.balances == reply.balances, "read-your-writes: the reply's balances"
    assert [(h.hold_id, h.amount) for h in view.holds] == [("h1", 3)]
    assert view.next_reset_at == min(
        b.next_reset_at for b in view.balances.values() if b.next_reset_at
    )


async def test_usage_and_transactions_pages(client):
    api = Api(client, _unique("api"))
    await api.send("open_account", plan="pro")
    for _ in range(3):
        await api.send("consume", action="lookup", quantity=2)
    await api.send("consume", action="cached_lookup")

    usage = await api.get("/usage", bucket="day")
    assert usage.status_code == 200
    page = UsagePage.model_validate(usage.json())
    rows = {(r.action, r.credit_type): r for r in page.usage}
    lookup = rows[("lookup", "credits")]
    assert (lookup.count, lookup.credits, lookup.cost, lookup.tags) == (6, 6, 6, ["non_ai"])
    assert rows[("cached_lookup", "credits")].count == 1
    assert usage.json()["from"] <= usage.json()["to"]

    seen: list[tuple[int, str]] = []
    before: str | None = None
    for _ in range(20):  # bounded: 2 per page
        params: dict[str, Any] = {"limit": 2, **({"before": before} if before else {})}
        response = await api.get("/transactions", **params)
        assert response.status_code == 200
        page_t = TransactionsPage.model_validate(response.json())
        seen += [(t.version, t.credit_type) for t in page_t.transactions]
        before = page_t.next_before
        if before is None:
            break
    assert len(seen) == len(set(seen)) == 3 + 4, "3 allocations, 4 consumes, each once"
    assert seen == sorted(seen, reverse=True)


async def test_unknown_accounts_are_404_unknown_account(client):
    for path in ("", "/usage", "/transactions"):
        response = await client.get(f"/v1/accounts/nobody-here{path}")
        assert response.status_code == 404, path
        assert ApiError.model_validate(response.json()).error.code == "unknown_account"
    response = await client.post(
        "/v1/accounts/nobody-here/commands",
        json={"type": "consume", "command_id": "c1", "action": "lookup"},
    )
    assert response.status_code == 404
    assert Reply.model_validate(response.json()).error.code == "unknown_account"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/transactions", {"limit": "0"}),
        ("/transactions", {"limit": "201"}),
        ("/transactions", {"limit": "ten"}),
        ("/transactions", {"before": "x"}),
        ("/usage", {"from": "2024-13-01"}),
        ("/usage", {"from": "2024-02-01", "to": "2024-01-01"}),
        ("/usage", {"from": "2020-01-01", "to": "2024-01-01"}),
        ("/usage", {"bucket": "week"}),
        ("", {"min_position": "-1"}),
    ],
)
async def test_bad_parameters_are_422_with_a_message(client, path, params):
    api = Api(client, _unique("bad"))
    await api.send("open_account", plan="free")

    response = await client.get(f"/v1/accounts/{api.account_id}{path}", params=params)

    assert response.status_code == 422
    error = ApiError.model_validate(response.json()).error
    assert error.code == "invalid_request" and error.message


async def test_bad_commands_are_422_invalid_command_and_rule_rejections_409(client):
    account_id = _unique("cmd")
    url = f"/v1/accounts/{account_id}/commands"
    opening = {"type": "open_account", "command_id": "c", "plan": "free"}
    not_json = await client.post(url, content=b"{nope")
    other = await client.post(url, json={**opening, "account_id": "someone-else"})
    bad_field = await client.post(url, json={**opening, "color": "red"})
    for response in (not_json, other, bad_field):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_command"
        assert response.json()["error"]["message"]
    await client.post(url, json=opening)
    too_much = {"type": "consume", "command_id": "big", "credit_type": "credits", "amount": 10**6}
    broke = await client.post(url, json=too_much)
    assert broke.status_code == 409
    assert broke.json()["error"]["code"] == "insufficient_credits"
    bad_id = await client.get("/v1/accounts/" + "x" * 129)
    assert bad_id.status_code == 422


async def test_a_position_not_reached_in_time_is_504(settings):
    impatient = settings.model_copy(update={"read_wait_seconds": 0.2})
    async for client in _client(impatient):
        account_id = _unique("late")
        opening = {"type": "open_account", "command_id": "o", "plan": "free"}
        await client.post(f"/v1/accounts/{account_id}/commands", json=opening)
        response = await client.get(f"/v1/accounts/{account_id}", params={"min_position": 10**12})
    assert response.status_code == 504
    assert ApiError.model_validate(response.json()).error.code == "read_model_behind"


async def test_seed_004_accounts_carry_the_usage_profile(settings, projector_running):
    docweb = settings.model_copy(update={"catalog_path": SEED_004})
    async for client in _client(docweb):
        api = Api(client, _unique("docweb"))
        await api.send("open_account", plan="pro")
        await api.send("consume", action="discovery", quantity=2)
        await api.send("consume", action="chat_message")
        await api.send("consume", action="discovery_cached")
        response = await api.get()
    assert response.status_code == 200
    profile = AccountView.model_validate(response.json()).profile
    assert profile is not None
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    assert (profile.credits_per_day, profile.credits_used_today, profile.credits_remaining) == (
        10,
        3,
        7,
    )
    assert profile.next_reset_time == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC
    )
    assert profile.totals_per_action == {"chat_message": 1, "discovery": 2, "discovery_cached": 1}


async def test_readyz_needs_the_database_and_every_registered_component(client, settings):
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = Readiness.model_validate(ready.json())
    assert body.database.ready and body.components["projector"].ready

    READINESS.register("test-consumer", "waiting for partitions")
    try:
        waiting = await client.get("/readyz")
    finally:
        READINESS.unregister("test-consumer")
    assert waiting.status_code == 503
    assert Readiness.model_validate(waiting.json()).components["test-consumer"].ready is False

    no_db = settings.model_copy(update={"pg_port": 1, "pg_connect_timeout_seconds": 1})
    async for other in _client(no_db):
        down = await other.get("/readyz")
    assert down.status_code == 503 and down.json()["database"]["ready"] is False


async def test_metrics_count_commands_by_status_and_show_projection_lag(client):
    api = Api(client, _unique("metrics"))
    await api.send("open_account", plan="free")
    await api.send("consume", credit_type="credits", amount=10**6)  # rejected

    text = (await client.get("/metrics")).text

    assert 'credits_commands_total{status="accepted",via="http"}' in text
    assert 'credits_commands_total{status="rejected",via="http"}' in text
    assert 'credits_projection_lag_events{projection="balances"}' in text
    assert "# TYPE credits_dlq_messages_total counter" in text


async def test_unknown_routes_are_json_404(client):
    response = await client.get("/v1/nothing")
    assert response.status_code == 404
    assert ApiError.model_validate(response.json()).error.code == "not_found"
