"""Commands through the API take the Kafka path to the ledger that owns the account: the API
writes nothing itself; a reply that does not come in time is a 504 with the command id, whose
outcome a later read returns; with Kafka or PostgreSQL down the API answers 503 with
Retry-After."""

from __future__ import annotations

import ast
import asyncio

import httpx
import pytest

from infra.kafka_topics import delete_topics
from infra.settings import PROJECT_DIR, Settings
from services.api import keys
from services.api.app import close_app, create_app
from services.api.models import CommandOutcome, CommandTimeoutError
from tests.api.conftest import api_settings_for, bearer, create_key, start_api
from tests.kit.ports import free_port
from tests.ledger_harness import RunningLedger, own_topics

pytestmark = pytest.mark.integration


def test_the_api_never_opens_the_event_store():
    forbidden = ("infra.event_store", "infra.ledger_application", "services.ledger")
    for path in (PROJECT_DIR / "services" / "api").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.startswith(forbidden)], (path, names)


async def test_an_accepted_commands_outcome_is_readable_and_a_rejected_one_leaves_none(client):
    url = "/v1/accounts/outcome-acct/commands"
    opened = await client.post(url, json={"type": "open_account", "command_id": "o", "plan": "pro"})
    assert opened.status_code in (200,), opened.text
    refused = await client.post(
        url, json={"type": "consume", "command_id": "r", "credit_type": "credits", "amount": 10**9}
    )
    assert refused.status_code == 409

    accepted = await client.get(f"{url}/o")
    assert accepted.status_code == 200
    outcome = CommandOutcome.model_validate(accepted.json())
    stored = outcome.reply.model_dump(mode="json")
    assert stored == {**opened.json(), "position": stored["position"]}, "the reply it was given"
    assert outcome.reply.status == "accepted"
    for missing in ("r", "never-sent"):
        response = await client.get(f"{url}/{missing}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_command"
    again = await client.post(url, json={"type": "open_account", "command_id": "o", "plan": "pro"})
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


async def test_no_reply_in_time_is_504_with_the_command_id_and_the_outcome_comes_later(
    settings: Settings, pg_database: str
):
    # Topics with no ledger on them yet: the command waits in Kafka.
    quiet = api_settings_for(await own_topics(settings), api_command_timeout_seconds=1)
    app = await start_api(quiet)
    transport = httpx.ASGITransport(app=app)
    headers = bearer(await create_key(quiet, keys.Scope.admin))
    url = "/v1/accounts/late-acct/commands"
    ledger: RunningLedger | None = None
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as c:
            sent = await c.post(
                url, json={"type": "open_account", "command_id": "slow", "plan": "free"}
            )
            assert sent.status_code == 504, sent.text
            body = CommandTimeoutError.model_validate(sent.json())
            assert body.command_id == "slow" and body.error.code == "command_timeout"
            assert (await c.get(f"{url}/slow")).status_code == 404, "not applied yet"

            ledger = RunningLedger(quiet)
            await ledger.start()
            outcome = await c.get(f"{url}/slow")
            for _ in range(300):  # bounded: the ledger applies it within seconds
                outcome = await c.get(f"{url}/slow")
                if outcome.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert outcome.status_code == 200, outcome.text
            assert CommandOutcome.model_validate(outcome.json()).reply.status == "accepted"
    finally:
        await close_app(app)
        if ledger is not None:
            await ledger.close()
        await delete_topics(quiet, quiet.all_topics())


async def test_with_kafka_down_commands_are_503_with_retry_after(api_settings: Settings):
    no_kafka = api_settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "kafka_request_timeout_seconds": 1,
        }
    )
    app = create_app(no_kafka)
    transport = httpx.ASGITransport(app=app)
    headers = bearer(await create_key(api_settings, keys.Scope.admin))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        responses = [
            await c.post(
                "/v1/accounts/a/commands",
                json={"type": "open_account", "command_id": f"k{i}", "plan": "free"},
            )
            for i in range(2)
        ]
    await close_app(app)
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "kafka_unavailable"
        assert int(response.headers["retry-after"]) > 0


async def test_with_postgres_down_every_v1_route_is_503_with_retry_after(api_settings: Settings):
    no_postgres = api_settings.model_copy(
        update={"pg_port": free_port(), "pg_connect_timeout_seconds": 1}
    )
    app = create_app(no_postgres)
    transport = httpx.ASGITransport(app=app)
    # A key cannot be checked without the database: 503, not 401.
    headers = bearer("ck_0123456789abcdef." + "a" * 43)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        responses = [
            await c.get("/v1/accounts/a"),
            await c.get("/v1/accounts/a/commands/c"),
            await c.post("/v1/accounts/a/commands", json={"type": "expire", "command_id": "e"}),
            await c.get("/v1/ops/projections"),
        ]
    await close_app(app)
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
        assert int(response.headers["retry-after"]) > 0
