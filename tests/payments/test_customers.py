"""One Stripe customer per account: Checkout passes the account's customer, creating (and
linking) one only for the first payment; a top-up charges the card saved last on it. Against
the fake Stripe (localstripe), with the routes' default customer lookup on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe

from domain.catalog import load_catalog
from infra.settings import Settings
from services.payments.customers import PostgresCustomers
from services.payments.handler import PaymentHandler
from services.payments.metadata import PaymentMetadata
from services.payments.purchases import PostgresPurchases
from services.payments.stripe_api import StripeApi
from services.payments.top_ups import TopUpRequest
from tests.kit.stripe_fake import FakeStripe
from tests.payments.conftest import CATALOGS, payments_app

pytestmark = pytest.mark.integration


@pytest.fixture
async def checkout(
    payment_settings: Settings, payment_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[httpx.AsyncClient]:
    async def plan_of(account_id: str) -> str | None:
        return "plus"

    app = payments_app(
        payment_settings,
        plan_of=plan_of,
        catalog=load_catalog(CATALOGS / "seed_002_plus_credits.toml"),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def _checkout(client: httpx.AsyncClient, account: str, fake: FakeStripe) -> dict[str, Any]:
    response = await client.post(
        "/v1/checkout", json={"account_id": account, "pack": "credits_200"}
    )
    assert response.status_code == 201, response.text
    sent: dict[str, Any] = next(
        r["form"] for r in fake.checkout_requests() if r["session"]["id"] == response.json()["id"]
    )
    return sent


async def test_checkout_creates_a_customer_for_the_first_payment_only_and_reuses_it(
    checkout: httpx.AsyncClient,
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
) -> None:
    account, other = f"plus-{uuid.uuid4().hex[:10]}", f"plus-{uuid.uuid4().hex[:10]}"
    first = await _checkout(checkout, account, fake_stripe)
    customer_id = first.get("customer")
    assert customer_id is not None and "customer_creation" not in first
    assert await customers.customer_of(account) == customer_id, "linked at once"
    created = stripe_client.v1.customers.retrieve(customer_id).to_dict()
    assert created["metadata"]["credits_account_id"] == account

    again = await asyncio.gather(*(_checkout(checkout, account, fake_stripe) for _ in range(3)))
    assert {form["customer"] for form in again} == {customer_id}
    elsewhere = await _checkout(checkout, other, fake_stripe)
    assert elsewhere["customer"] not in (None, customer_id)


def _card(client: stripe.StripeClient, number: str) -> str:
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        }
    )
    return str(method.id)


async def test_a_top_up_charges_the_card_saved_last_on_the_account_customer(
    payment_settings: Settings,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
    payment_database: str,
) -> None:
    account = f"pro-{uuid.uuid4().hex[:10]}"
    customer = stripe_client.v1.customers.create(
        params={"metadata": {"credits_account_id": account}}
    )
    await customers.link(account, customer.id)
    older = _card(stripe_client, "4242424242424242")
    stripe_client.v1.payment_methods.attach(older, params={"customer": customer.id})
    # Stripe's `created` is in seconds: the newer card is saved in a later second.
    saved_at = int(time.time())
    while int(time.time()) == saved_at:
        await asyncio.sleep(0.05)
    newer = _card(stripe_client, "5555555555554444")
    stripe_client.v1.payment_methods.attach(newer, params={"customer": customer.id})

    api = StripeApi(stripe_client)
    assert await api.saved_payment_method(customer.id) == newer
    purchases = await PostgresPurchases.open(payment_settings)
    try:
        handler = PaymentHandler(
            api,
            customers,
            purchases,
            cancel_plan="free",
            success_url="https://s",
            cancel_url="https://c",
        )
        meta = PaymentMetadata(account, "top_up", "api_calls", 500, top_up_id="tu-1")
        outcome = await handler.charge_top_up(TopUpRequest(meta, 500, "usd", f"{account}:tu-1"))
    finally:
        await purchases.close()
    assert outcome.note == "charged"
    (intent,) = [
        i
        for i in stripe_client.v1.payment_intents.list(params={"limit": 100}).data
        if i.customer == customer.id
    ]
    assert (intent.payment_method, intent.amount, intent.status) == (newer, 500, "succeeded")
