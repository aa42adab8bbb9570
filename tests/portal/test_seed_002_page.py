"""Seed 002 (PLUS credits): monthly, bonus and total shown apart; only PLUS may buy the
200-credit pack; Checkout's success message on return."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, Route, expect

from infra.settings import Settings
from tests.kit.stripe_fake import FakeStripe
from tests.portal.page import card, screenshot_path, usage_total
from tests.portal.stack import PortalStack, portal_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, pg_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    async with portal_stack(settings, "seed_002_plus_credits.toml", fake_stripe) as running:
        yield running


async def test_plus_shows_monthly_bonus_and_total_apart_and_buys_the_pack(
    stack: PortalStack, context: BrowserContext, fake_stripe: FakeStripe
) -> None:
    account_id = await stack.open_account("plus")
    for _ in range(5):
        await stack.command(account_id, "consume", action="generation")
    reply = await stack.command(
        account_id,
        "purchase",
        pack="credits_200",
        amount_paid=599,
        currency="usd",
        payment_reference=f"pi_{uuid.uuid4().hex[:12]}",
    )
    await stack.settled(account_id, reply["position"])
    page = await context.new_page()

    async def stripe_checkout(route: Route) -> None:
        sessions = await stack.http.get(f"{fake_stripe.api_base}/_config/test/checkout_sessions")
        success_url = sessions.json()[-1]["session"]["success_url"]
        await route.fulfill(status=303, headers={"Location": success_url})

    await page.route("https://checkout.stripe.test/**", stripe_checkout)
    await page.goto(await stack.page_url(account_id))

    await expect(page.get_by_test_id("plan-name")).to_have_text("PLUS")
    credits = card(page, "credits")
    await expect(credits.get_by_test_id("allocation-remaining")).to_have_text("295")
    await expect(credits.get_by_test_id("purchased-remaining")).to_have_text("200")
    await expect(credits.get_by_test_id("available")).to_have_text("495")
    await expect(usage_total(page, "generation").get_by_test_id("uses")).to_have_text("5")
    pack = page.get_by_test_id("buy-pack")
    await expect(pack).to_have_count(1)
    await expect(pack).to_have_text("200 bonus credits (200 credits): $5.99")
    await expect(page.get_by_test_id("buy-refused")).to_have_count(0)
    await page.screenshot(path=str(screenshot_path("seed-002")), full_page=True)

    await pack.click()
    await expect(page.get_by_test_id("checkout-notice")).to_contain_text("Payment received")
    await expect(credits.get_by_test_id("available")).to_have_text("495")
    recorded = await stack.http.get(f"{fake_stripe.api_base}/_config/test/checkout_sessions")
    form = recorded.json()[-1]["form"]
    assert form["client_reference_id"] == account_id
    assert form["line_items"][0]["price_data"]["unit_amount"] == "599"


async def test_a_free_account_is_told_only_plus_may_buy(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id = await stack.open_account("free")
    page = await context.new_page()
    await page.goto(await stack.page_url(account_id))
    await expect(card(page, "credits").get_by_test_id("available")).to_have_text("20")
    await expect(page.get_by_test_id("buy-pack")).to_have_count(0)
    await expect(page.get_by_test_id("buy-refused")).to_have_text(
        "Only PLUS may buy credits: upgrade to buy more."
    )
    # The portal token may not buy what the plan may not: the API refuses it too.
    refused = await page.evaluate(
        """async ([token, account_id]) => {
            const response = await fetch("/v1/checkout", {method: "POST",
              headers: {Authorization: "Bearer " + token, "Content-Type": "application/json"},
              body: JSON.stringify({account_id, pack: "credits_200"})});
            return [response.status, (await response.json()).error.code];
        }""",
        [await stack.token(account_id), account_id],
    )
    assert refused == [403, "not_eligible"]
