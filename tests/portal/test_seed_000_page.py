"""Seed 000 (QR sessions): a money budget. The page shows the budget left in dollars beside the
purchased credits, the parts, the session breakdown per action (AI vs non-AI), buying by amount
with the $5 minimum and its conversion on this plan, voice packs; the live update and the
Checkout return states."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, Route, expect

from infra.settings import Settings
from tests.kit.stripe_fake import FakeStripe
from tests.portal.page import COUNTDOWN, PHONE, bars, card, screenshot_path, usage_total
from tests.portal.stack import PortalStack, portal_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, pg_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    async with portal_stack(settings, "seed_000_qr_sessions.toml", fake_stripe) as running:
        yield running


async def starter_story(stack: PortalStack) -> tuple[str, int]:
    """A Starter account: 3 AI and 4 non-AI sessions, $5 of session credits, 10 voice calls."""
    account_id = await stack.open_account("starter")
    for _ in range(3):
        await stack.command(account_id, "consume", action="ai_session", resource="qr-1")
    for _ in range(4):
        await stack.command(account_id, "consume", action="non_ai_session", resource="qr-1")
    await stack.command(
        account_id,
        "purchase",
        credit_type="sessions",
        amount_paid=500,
        currency="usd",
        payment_reference=f"pi_{uuid.uuid4().hex[:12]}",
    )
    reply = await stack.command(
        account_id,
        "purchase",
        pack="voice_10",
        amount_paid=500,
        currency="usd",
        payment_reference=f"pi_{uuid.uuid4().hex[:12]}",
    )
    return account_id, reply["position"]


async def test_the_budget_in_money_the_parts_the_sessions_and_buying_by_amount(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id, position = await starter_story(stack)
    overview = await stack.settled(account_id, position)
    page = await context.new_page()
    await page.goto(await stack.page_url(account_id))

    await expect(page.get_by_test_id("plan-name")).to_have_text("Starter")
    sessions = card(page, "sessions")
    # 1,600 units a month, 3 x 2 + 4 x 1 spent: 1,590 left, worth $39.75 at 200 per $5.
    await expect(sessions.get_by_test_id("available")).to_have_text("1,790")
    await expect(sessions.get_by_test_id("allocation-remaining")).to_have_text("1,590")
    await expect(sessions.get_by_test_id("purchased-remaining")).to_have_text("200")
    await expect(sessions.get_by_test_id("budget-left")).to_have_text("$39.75")
    await expect(sessions.get_by_test_id("budget-total")).to_have_text("$40.00")
    await expect(sessions.get_by_test_id("spendable")).to_have_text("1,790")
    await expect(sessions.get_by_test_id("used-today")).to_have_text("10")
    # The monthly anniversary, counting down live.
    countdown = sessions.get_by_test_id("countdown")
    await expect(countdown).to_have_text(COUNTDOWN)
    reset_at = overview["credit_types"][0]["next_reset_at"]
    await expect(countdown).to_have_attribute("data-reset-at", reset_at.replace("+00:00", "Z"))
    first = await countdown.get_attribute("data-seconds")
    await expect(countdown).not_to_have_attribute("data-seconds", first or "")
    await expect(sessions.get_by_test_id("rate")).to_contain_text("Using about 10 a day")
    await expect(card(page, "voice").get_by_test_id("available")).to_have_text("10")
    assert [c["available"] for c in overview["credit_types"]] == [1790, 10]

    # The session breakdown: uses per action today, stacked bars, AI vs non-AI costs.
    totals = page.get_by_test_id("usage-total")
    await expect(totals).to_have_count(2)
    ai = usage_total(page, "ai_session")
    await expect(ai.get_by_test_id("uses")).to_have_text("3")
    await expect(ai.get_by_test_id("credits")).to_have_text("6")
    non_ai = usage_total(page, "non_ai_session")
    await expect(non_ai.get_by_test_id("uses")).to_have_text("4")
    await expect(bars(page)).to_have_count(2)
    await expect(bars(page, "ai_session")).to_have_attribute("data-value", "3")
    await expect(bars(page, "non_ai_session")).to_have_attribute("data-value", "4")

    # Buying: $5 minimum, converted at the Starter rate; voice packs for every plan.
    await expect(page.get_by_test_id("amount-input")).to_have_attribute("min", "5")
    await expect(page.get_by_test_id("amount-credits")).to_have_text("= 200 sessions")
    await page.get_by_test_id("amount-input").fill("12.50")
    await expect(page.get_by_test_id("amount-credits")).to_have_text("= 500 sessions")
    packs = page.get_by_test_id("buy-pack")
    await expect(packs).to_have_count(2)
    await expect(packs.first).to_contain_text("$5.00")

    # History: newest first, each row saying what it was.
    rows = page.get_by_test_id("tx-row")
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_have_attribute("data-kind", "purchase")
    await expect(rows.first).to_contain_text("Purchase: voice_10")  # its origin: the pack
    await expect(rows.last).to_contain_text("Plan allocation: starter, period from")
    await page.screenshot(path=str(screenshot_path("seed-000")), full_page=True)
    await page.set_viewport_size(PHONE)
    await expect(sessions.get_by_test_id("budget-left")).to_be_visible()
    await page.screenshot(path=str(screenshot_path("seed-000-phone")), full_page=True)


async def test_a_free_account_cannot_buy_sessions_or_spend_purchased_ones(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id = await stack.open_account("free")
    page = await context.new_page()
    await page.goto(await stack.page_url(account_id))
    refusal = page.locator("[data-testid=buy-refused][data-credit-type=sessions]")
    await expect(refusal).to_contain_text("Only Premium or Starter may buy sessions")
    await expect(page.get_by_test_id("amount-form")).to_have_count(0)
    # No money on a plan without a purchase rate.
    await expect(card(page, "sessions").get_by_test_id("budget")).to_have_count(0)


async def test_the_page_updates_within_a_second_of_a_consume_without_reloading(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id = await stack.open_account("starter")
    page = await context.new_page()
    await page.goto(await stack.page_url(account_id))
    sessions = card(page, "sessions")
    await expect(sessions.get_by_test_id("available")).to_have_text("1,600")
    await expect(page.get_by_test_id("live")).to_have_attribute("data-state", "on")
    await page.evaluate("window.__sameDocument = true")

    await stack.command(account_id, "consume", action="ai_session", resource="qr-9")
    await expect(sessions.get_by_test_id("available")).to_have_text("1,598")
    await expect(sessions.get_by_test_id("budget-left")).to_have_text("$39.95")
    await expect(bars(page, "ai_session")).to_have_count(1)
    await expect(page.get_by_test_id("tx-row").first).to_contain_text("Usage: ai_session")
    # Drawn again in place: the same document, never reloaded.
    assert await page.evaluate("window.__sameDocument") is True


async def test_checkout_goes_to_stripe_and_comes_back_with_its_state(
    stack: PortalStack, context: BrowserContext, fake_stripe: FakeStripe
) -> None:
    account_id = await stack.open_account("starter")
    page = await context.new_page()
    visited: list[str] = []

    async def stripe_checkout(route: Route) -> None:
        # Stands in for Stripe's hosted page: links to the session's own return addresses.
        visited.append(route.request.url)
        sessions = await stack.http.get(f"{fake_stripe.api_base}/_config/test/checkout_sessions")
        session = sessions.json()[-1]["session"]
        html = (
            f'<a id="pay" href="{session["success_url"]}">Pay</a>'
            f'<a id="back" href="{session["cancel_url"]}">Back</a>'
        )
        await route.fulfill(status=200, content_type="text/html", body=html)

    await page.route("https://checkout.stripe.test/**", stripe_checkout)
    await page.goto(await stack.page_url(account_id))
    await page.get_by_test_id("amount-input").fill("5")
    await page.get_by_role("button", name="Buy sessions").click()
    await page.locator("#back").click()
    await expect(page.get_by_test_id("checkout-notice")).to_contain_text("Checkout cancelled")
    # The token came back with the tab (sessionStorage): the page still reads the account.
    await expect(card(page, "sessions").get_by_test_id("available")).to_have_text("1,600")

    await page.get_by_role("button", name="Buy sessions").click()
    await page.locator("#pay").click()
    await expect(page.get_by_test_id("checkout-notice")).to_contain_text("Payment received")
    assert len(visited) == 2 and visited[0].startswith("https://checkout.stripe.test/c/pay/")
    recorded = await stack.http.get(f"{fake_stripe.api_base}/_config/test/checkout_sessions")
    last = recorded.json()[-1]["session"]
    assert last["success_url"] == f"{stack.base_url}/?checkout=success"
