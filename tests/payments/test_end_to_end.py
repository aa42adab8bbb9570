"""The whole loop with the real components: ledger consumer and outbox relay on PostgreSQL,
the payment consumer, the fake Stripe and its signed webhooks. A spend crosses the auto top-up
threshold → TopUpRequested → relay → credits.events → off-session PaymentIntent → webhook →
purchase on credits.commands → the ledger grants: the balance shows the credits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from eventsourcing.application import AggregateNotFoundError

from domain.account import Account
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from services.payments.customers import PostgresCustomers
from tests.kafka_client import KafkaTestClient
from tests.payments.conftest import wait_for_link

runner = pytest.importorskip("services.cli.supervisor")
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("payments_running", "webhook_url")]

SEED_001 = (
    Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "seed_001_stripe_credits.toml"
)
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
async def ledger_and_relay(
    payment_settings: Settings, payment_database: str, payment_topics: list[str]
) -> AsyncIterator[Settings]:
    if not hasattr(runner, "run_ledger") or not hasattr(runner, "run_relay"):
        pytest.skip("the ledger consumer and relay are not wired yet")
    settings = payment_settings.model_copy(update={"catalog_path": SEED_001})
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(runner.run_ledger(settings, stop)),
        asyncio.create_task(runner.run_relay(settings, stop)),
    ]
    yield settings
    stop.set()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=20)


async def _send(kafka: KafkaTestClient, settings: Settings, command: dict[str, Any]) -> None:
    await kafka.produce(
        settings.topic(Topic.COMMANDS), command["account_id"], json.dumps(command).encode()
    )


async def _account_when(
    settings: Settings, account_id: str, done: Any, timeout_seconds: float = WAIT_SECONDS
) -> Account:
    app = LedgerApplication(env=event_store_env(settings))
    try:
        async with asyncio.timeout(timeout_seconds):
            while True:
                try:
                    account: Account = await asyncio.to_thread(app.repository.get, account_id)
                    if done(account):
                        return account
                except AggregateNotFoundError:
                    pass
                await asyncio.sleep(0.2)
    finally:
        app.close()


async def _open_pro_with_card(
    kafka: KafkaTestClient,
    settings: Settings,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
    card: str,
) -> str:
    account = f"e2e-{uuid.uuid4().hex[:12]}"
    stripe_client.v1.customers.create(
        params={"metadata": {"credits_account_id": account}, "payment_method": card}
    )
    await wait_for_link(customers, account)
    await _send(
        kafka,
        settings,
        {"type": "open_account", "command_id": "open", "account_id": account, "plan": "pro"},
    )
    await _account_when(settings, account, lambda a: a.available("api_calls") == 1000)
    # Below the threshold of 100: the auto top-up (500 for $5) is requested.
    await _send(
        kafka,
        settings,
        {
            "type": "consume",
            "command_id": "spend",
            "account_id": account,
            "credit_type": "api_calls",
            "amount": 950,
        },
    )
    return account


async def test_auto_top_up_grants_once_the_saved_card_is_charged(
    ledger_and_relay: Settings,
    kafka: KafkaTestClient,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
) -> None:
    settings = ledger_and_relay
    account = await _open_pro_with_card(kafka, settings, stripe_client, customers, "pm_card_visa")
    topped_up = await _account_when(settings, account, lambda a: a.available("api_calls") == 550)
    lots = [lot for lot in topped_up.lots.values() if lot.source == "top_up"]
    assert [(lot.amount, lot.paid) for lot in lots] == [(500, True)]
    assert not topped_up.pending_top_ups


async def test_a_declined_card_records_the_failure_with_a_recovery_url_and_no_credits(
    ledger_and_relay: Settings,
    kafka: KafkaTestClient,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
) -> None:
    settings = ledger_and_relay
    account = await _open_pro_with_card(
        kafka, settings, stripe_client, customers, "pm_card_chargeCustomerFail"
    )
    failed = await _account_when(
        settings, account, lambda a: a.top_up_seq == 1 and not a.pending_top_ups
    )
    assert failed.available("api_calls") == 50
    app = LedgerApplication(env=event_store_env(settings))
    try:
        events = await asyncio.to_thread(lambda: list(app.events.get(account)))
    finally:
        app.close()
    (event,) = [e for e in events if isinstance(e, Account.TopUpFailed)]
    assert event.recovery_url is not None
    assert event.recovery_url.startswith("https://checkout.stripe.test/c/pay/cs_test_")
    assert event.reason.startswith("card_declined")
