"""Fixtures of the browser tests: Debian's Chromium (deploy/local/chromium.sh installs it)
driven by Playwright, and the fake Stripe of the payment tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright, expect

from tests.payments.conftest import fake_stripe

__all__ = ["fake_stripe"]

CHROMIUM = "/usr/bin/chromium"
# The machine's network is closed: without these Chromium waits on connections of its own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Bounded waits for conditions (never a fixed sleep).
WAIT_MS = 10_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/local/chromium.sh up (make test does)")
    # Playwright gives each launch a fresh --user-data-dir of its own (and removes it).
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    fresh = await browser.new_context(viewport={"width": 1100, "height": 1400})
    fresh.set_default_timeout(WAIT_MS)
    yield fresh
    await fresh.close()
