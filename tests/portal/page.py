"""What the browser tests read off the page, and where they keep their screenshots."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Locator, Page, ViewportSize

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".local" / "screenshots"
COUNTDOWN = re.compile(r"^(\d+d )?\d\dh \d\dm \d\ds$")
PHONE: ViewportSize = {"width": 390, "height": 844}


def card(page: Page, credit_type: str) -> Locator:
    """The balance card of one credit type."""
    return page.locator(f"[data-testid=credit-type][data-credit-type={credit_type}]")


def usage_total(page: Page, action: str) -> Locator:
    return page.locator(f"[data-testid=usage-total][data-action={action}]")


def bars(page: Page, key: str | None = None) -> Locator:
    """The chart's bar segments (of one action or credit type)."""
    selector = "[data-testid=chart] rect[data-key]"
    return page.locator(selector if key is None else f"{selector}[data-key={key}]")


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"plan-usage-{name}.png"
