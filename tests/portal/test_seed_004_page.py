"""Seed 004 (DocWeb): daily credits per tier reset at midnight UTC; free-but-counted actions
(cached discoveries) in the chart; nothing to buy: the page says to upgrade the tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import BrowserContext, Request, expect

from infra.settings import Settings
from tests.kit.stripe_fake import FakeStripe
from tests.portal.page import COUNTDOWN, bars, card, screenshot_path, usage_total
from tests.portal.stack import PortalStack, portal_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, pg_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    async with portal_stack(settings, "seed_004_docweb.toml", fake_stripe) as running:
        yield running


async def test_a_tier_that_may_not_buy_its_day_its_reset_and_free_discoveries(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id = await stack.open_account("pro")
    for action, times in (("discovery", 2), ("discovery_cached", 3), ("chat_message", 1)):
        for _ in range(times):
            reply = await stack.command(account_id, "consume", action=action)
    overview = await stack.settled(account_id, reply["position"])
    page = await context.new_page()
    await page.goto(await stack.page_url(account_id))

    await expect(page.get_by_test_id("plan-name")).to_have_text("Pro")
    credits = card(page, "credits")
    await expect(credits.get_by_test_id("available")).to_have_text("7")
    await expect(credits.get_by_test_id("allocation-remaining")).to_have_text("7")
    await expect(credits.get_by_test_id("used-today")).to_have_text("3")
    # Midnight UTC: the countdown is to tomorrow 00:00.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    countdown = credits.get_by_test_id("countdown")
    await expect(countdown).to_have_text(COUNTDOWN)
    reset_at = await countdown.get_attribute("data-reset-at")
    assert reset_at is not None and reset_at.startswith(f"{tomorrow}T00:00:00")
    assert overview["next_reset_at"].startswith(f"{tomorrow}T00:00:00")
    # Cached discoveries are free but counted: a bar of 3 uses, 0 credits, cost "free".
    await expect(bars(page, "discovery_cached")).to_have_attribute("data-value", "3")
    cached = usage_total(page, "discovery_cached")
    await expect(cached.get_by_test_id("uses")).to_have_text("3")
    await expect(cached.get_by_test_id("credits")).to_have_text("0")
    await expect(cached.locator("td").nth(2)).to_have_text("free")
    await expect(usage_total(page, "discovery").get_by_test_id("credits")).to_have_text("2")
    await page.screenshot(path=str(screenshot_path("seed-004")), full_page=True)
    # Stacked by credit type: credits spent, one segment.
    await page.get_by_label("Stack by").select_option("credit_type")
    await expect(bars(page, "credits")).to_have_attribute("data-value", "3")
    # Nothing to buy: upgrade the tier.
    await expect(page.get_by_test_id("buy-pack")).to_have_count(0)
    await expect(page.get_by_test_id("amount-form")).to_have_count(0)
    await expect(page.get_by_test_id("buy-refused")).to_have_text(
        "credits cannot be bought: upgrade your tier (Max) for more."
    )


async def test_the_range_buttons_ask_for_7_30_and_90_days(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id = await stack.open_account("free")
    await stack.command(account_id, "consume", action="discovery")
    page = await context.new_page()
    asked: list[str] = []

    def is_usage(request: Request) -> bool:
        return "/usage?" in request.url

    async with page.expect_request(is_usage) as first:
        await page.goto(await stack.page_url(account_id))
    asked.append((await first.value).url)
    await expect(card(page, "credits").get_by_test_id("available")).to_have_text("2")
    for days in (7, 90):
        # The page reads the overview before it asks for usage, so the button's state
        # changes before the usage request leaves: wait for the request itself.
        async with page.expect_request(is_usage) as request:
            await page.get_by_role("button", name=f"{days} days").click()
        asked.append((await request.value).url)
        await expect(page.get_by_role("button", name=f"{days} days")).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(page.locator("[data-testid=chart] rect[data-day]")).to_have_count(1)
    first_days = [url.split("from=")[1][:10] for url in asked]
    today = datetime.now(UTC).date()
    expected = [today - timedelta(days=n - 1) for n in (30, 7, 90)]
    assert first_days[-3:] == [d.isoformat() for d in expected]
    await expect(page.get_by_test_id("buy-refused")).to_contain_text("(Pro or Max)")
