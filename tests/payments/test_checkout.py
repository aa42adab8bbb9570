"""Checkout: pricing and eligibility from the catalog, and the request the SDK really sends
(checked on the fake Stripe's recording, since localstripe has no Checkout Sessions)."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from fastapi import Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.catalog import MAX_AMOUNT, load_catalog
from domain.commands import parse_command
from infra.settings import Settings
from services.api.errors import install_error_handlers
from services.payments import mapping as m
from services.payments.checkout import (
    CheckoutRefused,
    CheckoutRequest,
    price_checkout,
    session_params,
)
from services.payments.http import PaymentRoutes
from tests.kit.stripe_fake import FakeStripe
from tests.payments.conftest import memory_ledger

CATALOGS = Path(__file__).resolve().parents[2] / "domain" / "catalogs"
PLUS = load_catalog(CATALOGS / "seed_002_plus_credits.toml")
DEMO = load_catalog(CATALOGS / "demo.toml")
# Refusals of checkout alone: Stripe has nothing to charge (the ledger would grant for nothing).
CHECKOUT_ONLY = ("is free", "buys no credits")
_accounts = itertools.count()


def test_a_pack_is_sold_to_its_plans_only() -> None:
    order = price_checkout(PLUS, "plus", CheckoutRequest(account_id="a", pack="credits_200"))
    assert (order.amount_cents, order.currency, order.meta.credits) == (599, "usd", 200)
    with pytest.raises(CheckoutRefused) as refused:
        price_checkout(PLUS, "free", CheckoutRequest(account_id="a", pack="credits_200"))
    assert refused.value.code == "not_eligible"


@pytest.mark.parametrize(
    ("plan", "amount_cents", "code", "credits"),
    [
        ("starter", 1000, None, 200),  # 100 credits per 500 cents
        ("starter", 1299, None, 259),  # rounded down
        ("starter", 499, "invalid_command", None),  # below min_cents
        ("starter", 50001, "invalid_command", None),  # above max_cents
        ("free", 1000, "not_eligible", None),  # not a buyer, no rate
    ],
)
def test_an_amount_purchase_is_converted_and_bounded_by_the_plan(
    plan: str, amount_cents: int, code: str | None, credits: int | None
) -> None:
    request = CheckoutRequest(account_id="a", credit_type="credits", amount_cents=amount_cents)
    if code is None:
        assert price_checkout(DEMO, plan, request).meta.credits == credits
    else:
        with pytest.raises(CheckoutRefused) as refused:
            price_checkout(DEMO, plan, request)
        assert refused.value.code == code


@pytest.fixture
async def checkout_client(settings: Settings, fake_stripe: FakeStripe) -> Any:
    plans = {"plus-user": "plus", "free-user": "free"}

    async def plan_of(account_id: str) -> str | None:
        return plans.get(account_id)

    async def customer_of(account_id: str) -> str | None:
        return "cus_known" if account_id == "plus-user" else None

    routes = PaymentRoutes(
        settings.model_copy(update={"checkout_success_url": "https://shop.example/ok"}),
        # Who may start a checkout is the API's business (tests/api); here anyone may.
        checkout_access=Depends(lambda: lambda account_id: None),
        plan_of=plan_of,
        customer_of=customer_of,
        catalog=PLUS,
        stripe_client=stripe.StripeClient(
            "sk_test_checkout",
            base_addresses={"api": fake_stripe.api_base},
            http_client=stripe.HTTPXClient(),
        ),
    )
    app = FastAPI()
    app.include_router(routes.router)
    install_error_handlers(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_checkout_sends_stripe_the_pack_price_and_our_metadata(
    checkout_client: httpx.AsyncClient, fake_stripe: FakeStripe
) -> None:
    response = await checkout_client.post(
        "/v1/checkout", json={"account_id": "plus-user", "pack": "credits_200"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["url"].startswith("https://checkout.stripe.test/c/pay/cs_test_")
    recorded = next(r for r in fake_stripe.checkout_requests() if r["session"]["id"] == body["id"])
    form = recorded["form"]
    metadata = {
        "credits_kind": "pack",
        "credits_account_id": "plus-user",
        "credits_credit_type": "credits",
        "credits_amount": "200",
        "credits_pack": "credits_200",
    }
    assert form["mode"] == "payment"
    assert form["customer"] == "cus_known"
    assert form["client_reference_id"] == "plus-user"
    assert form["line_items"] == [
        {
            "quantity": "1",
            "price_data": {
                "currency": "usd",
                "unit_amount": "599",
                "product_data": {"name": "200 bonus credits"},
            },
        }
    ]
    assert form["metadata"] == metadata
    assert form["payment_intent_data"] == {
        "metadata": metadata,
        "setup_future_usage": "off_session",
    }
    assert form["success_url"] == "https://shop.example/ok"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"account_id": "free-user", "pack": "credits_200"}, 403, "not_eligible"),
        ({"account_id": "nobody", "pack": "credits_200"}, 404, "unknown_account"),
        ({"account_id": "plus-user", "pack": "nope"}, 400, "invalid_command"),
        (
            {"account_id": "plus-user", "pack": "credits_200", "amount_cents": 5},
            400,
            "invalid_command",
        ),
        (
            {"account_id": "plus-user", "credit_type": "credits", "amount_cents": 5.5},
            400,
            "invalid_command",
        ),
    ],
)
async def test_checkout_refuses_what_the_ledger_would_refuse(
    checkout_client: httpx.AsyncClient,
    fake_stripe: FakeStripe,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = len(fake_stripe.checkout_requests())
    response = await checkout_client.post("/v1/checkout", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert len(fake_stripe.checkout_requests()) == before, "nothing asked of Stripe"


def test_the_completed_session_of_that_request_becomes_a_valid_purchase() -> None:
    order = price_checkout(PLUS, "plus", CheckoutRequest(account_id="a", pack="credits_200"))
    params = session_params(
        order, customer_id=None, success_url="https://s", cancel_url="https://c"
    )
    assert params["customer_creation"] == "always"
    completed = {
        "id": "cs_2",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": "pi_2",
        "amount_total": order.amount_cents,
        "currency": order.currency,
        "metadata": params["metadata"],
        "customer": "cus_new",
    }
    (command,) = m.checkout_session_paid(completed).commands
    parse_command(command)
    assert command["pack"] == "credits_200" and command["amount_paid"] == 599


@functools.cache
def _requests(catalog: str) -> st.SearchStrategy[tuple[str, CheckoutRequest]]:
    loaded = load_catalog(CATALOGS / catalog)
    plans = st.sampled_from(sorted(loaded.plans))
    by_pack = st.builds(
        lambda pack: CheckoutRequest(account_id="a", pack=pack),
        st.sampled_from([*sorted(loaded.packs), "no_such_pack"]),
    )
    by_amount = st.builds(
        lambda credit_type, cents: CheckoutRequest(
            account_id="a", credit_type=credit_type, amount_cents=cents
        ),
        st.sampled_from([*sorted(loaded.credit_types), "no_such_type"]),
        st.integers(min_value=1, max_value=60_000) | st.integers(min_value=1, max_value=MAX_AMOUNT),
    )
    return st.tuples(plans, by_pack | by_amount)


@pytest.mark.parametrize("catalog", ["demo.toml", "seed_002_plus_credits.toml"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_checkout_quotes_what_the_account_then_grants_and_refuses_what_it_refuses(
    catalog: str, data: st.DataObject
) -> None:
    """Checkout and the account price with the same rules: an order checkout makes is the
    purchase the account grants, credit for credit; a refusal carries the account's code."""
    plan, request = data.draw(_requests(catalog))
    ledger = memory_ledger(catalog)
    account = f"acct-{next(_accounts)}"
    ledger.ok("open_account", account, "open", plan=plan)
    request = request.model_copy(update={"account_id": account})
    try:
        order = price_checkout(ledger.catalog, plan, request)
    except CheckoutRefused as refused:
        order, refusal = None, refused
    if order is not None:
        params = session_params(order, customer_id=None, success_url="s", cancel_url="c")
        paid = {
            "id": f"cs_{account}",
            "mode": "payment",
            "payment_status": "paid",
            "payment_intent": f"pi_{account}",
            "amount_total": order.amount_cents,
            "currency": order.currency,
            "metadata": params["metadata"],
        }
        (reply,) = ledger.apply(list(m.checkout_session_paid(paid).commands))
        assert reply.status == "accepted", reply.error
        assert ledger.available(order.meta.credit_type, account) >= order.meta.credits
        return
    if refusal.message.endswith(CHECKOUT_ONLY):
        return
    # What the account says to the same purchase, paid at the price it would ask.
    purchase: dict[str, Any] = {"payment_reference": f"pi_{account}", "currency": "usd"}
    if request.pack is not None:
        pack = ledger.catalog.packs.get(request.pack)
        purchase |= {"pack": request.pack, "amount_paid": pack.price_cents if pack else 100}
    else:
        purchase |= {"credit_type": request.credit_type, "amount_paid": request.amount_cents}
    (reply,) = ledger.apply(
        [{"type": "purchase", "command_id": "p", "account_id": account, **purchase}]
    )
    assert reply.status == "rejected" and reply.error is not None
    assert reply.error.code == refusal.code, (reply.error.message, refusal.message)
