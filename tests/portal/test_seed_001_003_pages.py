"""Seeds 001 (Stripe credits: two credit types, a low-balance threshold, on-demand and auto
top-ups) and 003 (AI proxy: a free trial, packs and prices, a warning at 5 or fewer)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, expect

from infra.settings import Settings
from tests.kit.stripe_fake import FakeStripe
from tests.portal.page import card, screenshot_path
from tests.portal.stack import PortalStack, portal_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
async def stack_001(
    settings: Settings, pg_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    async with portal_stack(settings, "seed_001_stripe_credits.toml", fake_stripe) as running:
        yield running


@pytest.fixture(scope="module")
async def stack_003(
    settings: Settings, pg_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    async with portal_stack(settings, "seed_003_ai_proxy.toml", fake_stripe) as running:
        yield running


async def test_seed_001_low_balance_and_an_on_demand_top_up_from_the_page(
    stack_001: PortalStack, context: BrowserContext
) -> None:
    stack = stack_001
    account_id = await stack.open_account("pro")
    await stack.command(account_id, "consume", action="api_call", quantity=950)
    page = await context.new_page()
    await page.goto(await stack.page_url(account_id))

    api_calls = card(page, "api_calls")
    await expect(api_calls.get_by_test_id("available")).to_have_text("50")
    await expect(card(page, "ai_tokens").get_by_test_id("available")).to_have_text("50,000")
    await expect(page.get_by_test_id("low-balance")).to_have_text(
        "Low balance: 50 api_calls left (warning at 100 or fewer)."
    )
    top_ups = page.get_by_test_id("top-up")
    await expect(top_ups).to_have_count(2)
    first = page.locator("[data-testid=top-up][data-credit-type=api_calls]")
    await expect(first).to_contain_text("Auto top-up (your plan's default): below 100, buy 500")
    await expect(first.get_by_test_id("top-up-input")).to_have_attribute("min", "100")
    await expect(first.get_by_test_id("top-up-input")).to_have_attribute("max", "10000")
    await first.get_by_test_id("top-up-input").fill("500")
    await expect(first.get_by_test_id("top-up-price")).to_have_text("= $5.00")
    await first.get_by_role("button", name="Top up now").click()
    # The portal token sent request_top_up itself; the ledger accepted it.
    await expect(page.get_by_test_id("top-up-notice")).to_contain_text(
        "Top-up of 500 api_calls requested"
    )
    await page.screenshot(path=str(screenshot_path("seed-001")), full_page=True)


async def test_seed_003_trial_credits_packs_in_price_order_and_the_warning(
    stack_003: PortalStack, context: BrowserContext
) -> None:
    stack = stack_003
    account_id = await stack.open_account("payg")
    for _ in range(6):
        await stack.command(account_id, "consume", action="generate_image")
    page = await context.new_page()
    await page.goto(await stack.page_url(account_id))

    credits = card(page, "credits")
    await expect(credits.get_by_test_id("available")).to_have_text("4")
    await expect(credits.get_by_test_id("other-remaining")).to_have_text("4")
    await expect(credits.get_by_test_id("purchased-remaining")).to_have_text("0")
    await expect(credits.get_by_test_id("countdown")).to_have_count(0)
    await expect(page.get_by_test_id("low-balance")).to_contain_text("4 credits left")
    await expect(page.get_by_test_id("buy-pack")).to_have_text(
        [
            "Basic Pack (40 credits): $9.99",
            "Premium Pack (100 credits): $24.99",
            "Pro Pack (250 credits): $59.99",
            "Enterprise Pack (1,000 credits): $199.99",
        ]
    )
    await expect(page.get_by_test_id("tx-row").last).to_have_attribute("data-kind", "grant")
    await page.screenshot(path=str(screenshot_path("seed-003")), full_page=True)
