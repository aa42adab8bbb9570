"""Stripe webhook → visible balance: a signed `checkout.session.completed` POSTed to the API, until
`GET /v1/accounts/{id}` shows the credits it bought.

The path: the API verifies and publishes to `stripe.events` (acks=all) → the payment consumer
records the purchase and sends it → the ledger applies it → the projector updates the balances
read model → the API reads it. Each runs as its own process (`credits run api|payments|ledger|
projector`), as in production; this process only POSTs and polls, one payment at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
import stripe

from bench.ledger_kafka import CATALOG_PATH
from bench.rows import BenchRow, percentile
from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import PROJECT_DIR, Settings
from services.api import keys
from services.ledger.service import LedgerService, SystemClock
from tests.kit.ports import free_port

PAYMENTS = 200
WARM_UP_PAYMENTS = 5
PACK = "bench_pack"
PACK_CREDITS = 100
PACK_PRICE_CENTS = 100
SECRET = "whsec_bench"
# Reading again this often while the credits are not there: often enough for a few ms of
# resolution, rarely enough not to take the cores the components need.
POLL_SECONDS = 0.003
PAYMENT_TIMEOUT_SECONDS = 30.0
START_TIMEOUT_SECONDS = 60.0
COMPONENTS = ("ledger", "projector", "payments", "api")


def _open_accounts(settings: Settings) -> list[str]:
    """Set-up, not what is measured: opened straight through the service."""
    app = LedgerApplication(env={**event_store_env(settings), "AGGREGATE_CACHE_MAXSIZE": "0"})
    try:
        service = LedgerService(app, load_catalog(CATALOG_PATH), SystemClock())
        names = [f"pay-{n}" for n in range(WARM_UP_PAYMENTS + PAYMENTS)]
        replies = service.handle_many(
            [
                {"type": "open_account", "command_id": "open", "account_id": n, "plan": "bench"}
                for n in names
            ]
        )
        assert {r.status for r in replies} == {"accepted"}, replies[0]
        return names
    finally:
        app.close()


def _start(settings: Settings, http_port: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "CREDITS_PG_DATABASE": settings.pg_database,
        "CREDITS_TOPIC_PREFIX": settings.topic_prefix,
        "CREDITS_CATALOG_PATH": str(CATALOG_PATH),
        "CREDITS_LOG_LEVEL": "WARNING",
        "CREDITS_STRIPE_WEBHOOK_SECRETS": SECRET,
        "CREDITS_HTTP_PORT": str(http_port),
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", component],
            # Each process serves an ops port of its own.
            env={**env, "CREDITS_OPS_PORT": str(free_port())},
            cwd=PROJECT_DIR,
        )
        for component in COMPONENTS
    ]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _webhook(account_id: str) -> tuple[bytes, str]:
    intent = f"pi_bench_{uuid.uuid4().hex[:16]}"
    metadata = {
        "credits_kind": "pack",
        "credits_account_id": account_id,
        "credits_credit_type": "credits",
        "credits_amount": str(PACK_CREDITS),
        "credits_pack": PACK,
    }
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"cs_bench_{uuid.uuid4().hex}",
                "object": "checkout.session",
                "mode": "payment",
                "payment_status": "paid",
                "payment_intent": intent,
                "amount_total": PACK_PRICE_CENTS,
                "currency": "usd",
                "metadata": metadata,
            }
        },
    }
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, SECRET)
    return body.encode(), header


async def _purchased(client: httpx.AsyncClient, account_id: str) -> int | None:
    answer = await client.get(f"/v1/accounts/{account_id}")
    if answer.status_code != 200:
        return None
    balances: dict[str, Any] = answer.json()["balances"]
    return int(balances.get("credits", {}).get("purchased_remaining", 0))


async def _one_payment(client: httpx.AsyncClient, account_id: str) -> float:
    """Milliseconds from the webhook POST to the credits on `GET /v1/accounts/{id}`."""
    body, header = _webhook(account_id)
    before = await _purchased(client, account_id) or 0
    started = time.perf_counter()
    answer = await client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
    )
    assert answer.status_code == 200, answer.text
    deadline = started + PAYMENT_TIMEOUT_SECONDS
    while (await _purchased(client, account_id) or 0) < before + PACK_CREDITS:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{account_id}: no credits after {PAYMENT_TIMEOUT_SECONDS} s")
        await asyncio.sleep(POLL_SECONDS)
    return (time.perf_counter() - started) * 1000


async def _until_serving(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the API did not answer within {START_TIMEOUT_SECONDS} s")


async def _read_key(settings: Settings) -> str:
    """A `read` API key for the balance reads (every /v1 route needs one)."""
    conn = await asyncpg.connect(settings.pg_dsn())
    try:
        await keys.ensure_table(conn)
        return (await keys.create_key(conn, "bench", keys.Scope.read)).secret_key
    finally:
        await conn.close()


async def payment_rows(settings: Settings) -> list[BenchRow]:
    accounts = await asyncio.to_thread(_open_accounts, settings)
    read_key = await _read_key(settings)
    port = free_port()
    processes = _start(settings, port)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=10,
            headers={"Authorization": f"Bearer {read_key}"},
        ) as client:
            await _until_serving(client)
            # Warm-up: every component has joined its group and answers.
            for account_id in accounts[:WARM_UP_PAYMENTS]:
                await _one_payment(client, account_id)
            latencies_ms = sorted(
                [await _one_payment(client, a) for a in accounts[WARM_UP_PAYMENTS:]]
            )
    finally:
        await asyncio.to_thread(_stop, processes)
    return [
        BenchRow(
            "Stripe webhook → balance visible, p50",
            percentile(latencies_ms, 0.50),
            "ms",
            f"{len(latencies_ms)} payments one at a time: POST → GET /v1/accounts/{{id}}",
        ),
        BenchRow(
            "Stripe webhook → balance visible, p99",
            percentile(latencies_ms, 0.99),
            "ms",
            f"max {latencies_ms[-1]:.1f} ms; api, payments, ledger, projector as processes",
        ),
    ]
