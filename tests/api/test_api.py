"""Acceptance: every endpoint answers with the documented shapes (the pydantic models the
OpenAPI document is generated from, which forbid extra fields); commands go through Kafka to the
ledger and are answered synchronously; unknown accounts are 404 `unknown_account`; bad
parameters are 422 with a message; reads can wait for a position; `/readyz` and `/metrics` are
on the ops app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.catalog import load_catalog
from domain.replies import Reply
from infra.kafka_topics import delete_topics
from infra.ops_server import Readiness, dependency_checks, ops_app
from infra.readiness import READINESS
from infra.settings import PROJECT_DIR, Settings
from services.api import keys
from services.api.app import close_app, create_app
from services.api.models import AccountView, ApiError, TransactionsPage, UsagePage
from tests.api.conftest import api_settings_for, bearer, create_key, start_api
from tests.databases import fresh_database
from tests.kit.ledger import ledger_on_postgres
from tests.ledger_harness import RunningLedger, own_topics

pytestmark = pytest.mark.integration

SEED_004 = PROJECT_DIR / "domain" / "catalogs" / "seed_004_docweb.toml"


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


async def test_a_streaming_hold_over_http_is_billed_in_parts_extended_and_closed(client):
    api = Api(client, _unique("stream"))
    await api.send("open_account", plan="starter")
    await api.send("reserve", hold_id="s1", action="generate", quantity=5, ttl_seconds=60)
    reserved = AccountView.model_validate((await api.get()).json())
    (held,) = reserved.holds
    part = await api.send("capture", hold_id="s1", amount=4, final=False)
    extended = await api.send("extend_hold", hold_id="s1", ttl_seconds=3000)
    assert part.json()["result"]["held_remaining"] == held.amount - 4
    assert extended.json()["status"] == "accepted"

    view = AccountView.model_validate((await api.get()).json())
    (still,) = view.holds
    assert (still.hold_id, still.amount) == ("s1", held.amount - 4)
    assert still.expires_at > held.expires_at
    assert view.balances == Reply.model_validate(extended.json()).balances

    closed = await api.send("capture", hold_id="s1", amount=1)
    assert closed.json()["result"]["released"] == held.amount - 5
    done = AccountView.model_validate((await api.get()).json())
    assert done.holds == []
    assert done.balances["credits"].held == 0
    rows = (await api.get("/transactions")).json()["transactions"]
    captures = [r for r in rows if r["kind"] == "capture"]
    assert sorted(r["amount"] for r in captures) == [1, 4], "each part is a row of its own"


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
    response = await client.get(f"/v1/accounts/any-account{path}", params=params)

    assert response.status_code == 422
    error = ApiError.model_validate(response.json()).error
    assert error.code == "invalid_request" and error.message
    assert error.message.split(":")[0] in {*params, "from..to"}, "names the parameter"


async def test_bad_commands_are_refused_with_a_code_and_rule_rejections_are_409(client):
    account_id = _unique("cmd")
    url = f"/v1/accounts/{account_id}/commands"
    opening = {"type": "open_account", "command_id": "c", "plan": "free"}
    not_json = await client.post(url, content=b"{nope")
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"
    other = await client.post(url, json={**opening, "account_id": "someone-else"})
    bad_field = await client.post(url, json={**opening, "color": "red"})
    nul = await client.post(url, json={**opening, "command_id": "c\u0000"})
    for response in (other, bad_field, nul):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_command"
        assert response.json()["error"]["message"]
    huge = await client.post(url, content=b'{"type": "' + b"x" * 20_000 + b'"}')
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"
    await client.post(url, json=opening)
    too_much = {"type": "consume", "command_id": "big", "credit_type": "credits", "amount": 10**6}
    broke = await client.post(url, json=too_much)
    assert broke.status_code == 409
    assert broke.json()["error"]["code"] == "insufficient_credits"
    bad_id = await client.get("/v1/accounts/" + "x" * 129)
    assert bad_id.status_code == 422


async def test_a_position_not_reached_in_time_is_504_and_one_beyond_the_log_422(
    base_settings, api_settings, scope_keys
):
    # A database whose log has an event that no projector has applied.
    behind = api_settings.model_copy(
        update={"pg_database": f"{api_settings.pg_database}_behind", "read_wait_seconds": 0.2}
    )
    with fresh_database(base_settings, behind.pg_database):
        writer = ledger_on_postgres(behind, load_catalog(behind.catalog_path))
        position = writer.ok("open_account", "behind-acct", plan="free").position
        writer.close()
        assert position is not None
        app = create_app(behind)
        transport = httpx.ASGITransport(app=app)
        headers = bearer(await create_key(behind, keys.Scope.read))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as other:
            late = await other.get("/v1/accounts/behind-acct", params={"min_position": position})
            beyond = await other.get(
                "/v1/accounts/behind-acct", params={"min_position": position + 1}
            )
        await close_app(app)
    assert late.status_code == 504
    assert ApiError.model_validate(late.json()).error.code == "read_model_behind"
    assert beyond.status_code == 422
    assert beyond.json()["error"]["message"].startswith("min_position: beyond")


@pytest.fixture
async def docweb_client(
    settings: Settings, projector_running: None
) -> AsyncIterator[httpx.AsyncClient]:
    """An API and a ledger on the seed 004 catalog (topics of their own)."""
    docweb = api_settings_for(await own_topics(settings), catalog_path=SEED_004)
    ledger = RunningLedger(docweb, catalog=load_catalog(SEED_004))
    await ledger.start()
    app = await start_api(docweb)
    transport = httpx.ASGITransport(app=app)
    headers = bearer(await create_key(docweb, keys.Scope.admin))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c
    await close_app(app)
    await ledger.close()
    await delete_topics(docweb, docweb.all_topics())


async def test_seed_004_accounts_carry_the_usage_profile(docweb_client):
    api = Api(docweb_client, _unique("docweb"))
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


async def _ops_get(app, path: str) -> httpx.Response:
    """The ops port of a process running the API (services/cli/supervisor.py)."""
    settings = app.state.resources.settings
    served = ops_app(checks=dependency_checks(settings, {"postgres", "kafka"}))
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as ops:
        return await ops.get(path)


async def test_readyz_needs_the_database_kafka_and_every_registered_component(api, api_settings):
    # The projector is ready after its first pass, which may still be under way.
    for _ in range(100):
        ready = await _ops_get(api, "/readyz")
        if ready.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert ready.status_code == 200, ready.text
    body = Readiness.model_validate(ready.json())
    assert body.checks["postgres"].ready and body.checks["kafka"].ready
    assert body.components["projector"].ready

    READINESS.register("test-consumer", "waiting for partitions")
    try:
        waiting = await _ops_get(api, "/readyz")
    finally:
        READINESS.unregister("test-consumer")
    assert waiting.status_code == 503
    assert Readiness.model_validate(waiting.json()).components["test-consumer"].ready is False

    no_db = api_settings.model_copy(update={"pg_port": 1, "pg_connect_timeout_seconds": 1})
    app = create_app(no_db)
    down = await _ops_get(app, "/readyz")
    await close_app(app)
    assert down.status_code == 503 and down.json()["checks"]["postgres"]["ready"] is False


async def test_metrics_count_commands_by_status_and_show_projection_lag(client, api):
    api_client = Api(client, _unique("metrics"))
    await api_client.send("open_account", plan="free")
    await api_client.send("consume", credit_type="credits", amount=10**6)  # rejected

    text = (await _ops_get(api, "/metrics")).text

    assert 'credits_commands_total{door="http",status="accepted",type="open_account"}' in text
    assert 'credits_commands_total{door="http",status="rejected",type="consume"}' in text
    assert 'credits_projection_lag_events{projection="balances"}' in text
    assert "# TYPE credits_dlq_messages_total counter" in text
    assert (await client.get("/metrics")).status_code == 404, "not on the public port"


async def test_unknown_routes_are_json_404_and_wrong_methods_405_with_allow(client):
    response = await client.get("/v1/nothing")
    assert response.status_code == 404
    assert ApiError.model_validate(response.json()).error.code == "not_found"
    wrong = await client.delete("/v1/accounts/someone/commands")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert ApiError.model_validate(wrong.json()).error.code == "method_not_allowed"
