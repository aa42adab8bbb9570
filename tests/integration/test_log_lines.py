"""The log of `credits run all` answers questions and leaks nothing: one line per command
decided and per HTTP request, the component on every line, and no credential anywhere (an API
key, a portal token, the Stripe key and webhook secret, the portal signing secret), even on
the paths that fail (a bad signature, Stripe away, a refused key)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from services.api.keys import Scope
from tests.api.conftest import bearer, create_key
from tests.faults.component_process import ComponentProcess, LogLine
from tests.kit.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pg_database", "kafka_topics")]

READY_WITHIN_SECONDS = 120.0
RUN_ID = uuid.uuid4().hex[:8]
STRIPE_KEY = f"sk_test_logcheck{RUN_ID}"
WEBHOOK_SECRET = f"whsec_logcheck{RUN_ID}"
PORTAL_SECRET = f"portal-logcheck-{RUN_ID}"
COMMAND_FIELDS = {"account_id", "command_id", "type", "status", "error_code", "correlation_id"}
COMMAND_FIELDS |= {"trace_id", "latency_ms", "component"}


def _wait_ready(ops_url: str, process: ComponentProcess) -> None:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        assert process.running(), process.text()[-3000:]
        try:
            if httpx.get(f"{ops_url}/readyz", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready: {process.text()[-3000:]}")


def _lines_until(process: ComponentProcess, found: Any) -> list[LogLine]:
    """The log once `found(lines)` holds (the ledger logs as it decides, the API as it answers)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = process.lines()
        if found(lines):
            return lines
        time.sleep(0.2)
    return process.lines()


async def test_commands_and_requests_are_logged_with_their_fields_and_no_secret(
    settings: Settings, tmp_path: Path
) -> None:
    mine = settings.model_copy(update={"http_port": free_port(), "ops_port": free_port()})
    admin_key = await create_key(mine, Scope.admin, name="logs")
    process = ComponentProcess(
        "all",
        mine,
        tmp_path,
        CREDITS_STRIPE_API_KEY=STRIPE_KEY,
        # Stripe away: its failure is logged, the key must not be.
        CREDITS_STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}",
        CREDITS_STRIPE_TIMEOUT_SECONDS="2",
        CREDITS_STRIPE_WEBHOOK_SECRETS=WEBHOOK_SECRET,
        CREDITS_PORTAL_TOKEN_SECRETS=PORTAL_SECRET,
    )
    account = f"logs-{RUN_ID}"
    try:
        _wait_ready(f"http://127.0.0.1:{mine.ops_port}", process)
        base = f"http://127.0.0.1:{mine.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            commands = f"/v1/accounts/{account}/commands"
            opened = await client.post(
                commands,
                json={"type": "open_account", "command_id": f"{account}-1", "plan": "free"},
                headers=bearer(admin_key),
            )
            refused = await client.post(
                commands,
                json={
                    "type": "consume",
                    "command_id": f"{account}-2",
                    "credit_type": "credits",
                    "amount": 10**9,
                },
                headers={**bearer(admin_key), "X-Correlation-Id": "corr-logs"},
            )
            issued = await client.post(
                "/v1/portal-tokens",
                json={"account_id": account, "ttl_seconds": 600},
                headers=bearer(admin_key),
            )
            token = issued.json()["token"]
            # A token in the query string too, as a careless client might send it.
            read = await client.get(f"/v1/accounts/{account}?token={token}", headers=bearer(token))
            await client.post(
                "/v1/checkout",
                json={"account_id": account, "credit_type": "credits", "amount_cents": 500},
                headers=bearer(token),
            )
            await client.post(
                "/webhooks/stripe",
                content=b'{"id": "evt_x", "type": "checkout.session.completed"}',
                headers={"Stripe-Signature": f"t=1,v1={WEBHOOK_SECRET}"},
            )
            await client.get(f"/v1/accounts/{account}", headers=bearer(f"{admin_key}x"))
        assert opened.status_code == 200, opened.text
        assert refused.status_code == 409, refused.text
        # Read with the token: 404 until the read models have the new account.
        assert read.status_code in (200, 404), read.text

        lines = _lines_until(
            process,
            lambda found: sum(line.event == "request" for line in found) >= 7,
        )
    finally:
        process.terminate(30)
        process.kill()

    text = process.text()
    for secret in (admin_key, token, STRIPE_KEY, WEBHOOK_SECRET, PORTAL_SECRET):
        assert secret not in text
    assert "Authorization" not in text and "authorization" not in text
    assert lines and all("component" in line.fields for line in lines), [
        line.fields for line in lines if "component" not in line.fields
    ][:3]

    decided = {
        line.fields["command_id"]: line.fields
        for line in lines
        if line.event == "command" and line.fields.get("account_id") == account
    }
    assert set(decided) == {f"{account}-1", f"{account}-2"}
    consume = decided[f"{account}-2"]
    assert set(consume) >= COMMAND_FIELDS
    assert (consume["type"], consume["status"], consume["error_code"]) == (
        "consume",
        "rejected",
        "insufficient_credits",
    )
    assert consume["component"] == "ledger"
    assert consume["correlation_id"] and consume["latency_ms"] >= 0

    requests = [line.fields for line in lines if line.event == "request"]
    assert all(r["component"] == "api" for r in requests)
    routes = {(r["method"], r["route"], r["status"]) for r in requests}
    assert ("POST", "/v1/accounts/{account_id}/commands", 409) in routes
    assert ("GET", "/v1/accounts/{account_id}", read.status_code) in routes
    assert ("GET", "/v1/accounts/{account_id}", 401) in routes
    assert all("latency_ms" in r and "?" not in r["route"] for r in requests)
